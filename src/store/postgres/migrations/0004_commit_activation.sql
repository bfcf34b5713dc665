-- Schema version 4: an activation's compare-and-swap, with the consumption of a nonce and the append of
-- an audit record, as one function, so that a verification commits in one statement and one round trip
-- (no BEGIN, no lane lock, no COMMIT of its own: the statement is its own transaction).
--
-- Every step is conditioned on what the caller read, and a step that matches no row raises, which rolls
-- back everything the statement did; the SQLSTATE says which step (class "OS", not used by PostgreSQL):
--
--   OS001  the activation is missing or its version is not p_read_version (the caller asks which)
--   OS002  the nonce is missing, consumed, or not the activation's (p_nonce_owned; the caller asks which)
--   OS003  the audit lane's head is not (p_seq - 1, p_prev_hash): another writer moved it since the caller
--          read it; the caller reads the head again and seals the record anew
--
-- The steps run in the order of every other write of an activation (activation row, nonce row, lane head
-- row), so concurrent writers cannot deadlock. The records are the codec's bytes, as in every table.
CREATE FUNCTION commit_activation(
    p_activation        text,
    p_read_version      bigint,
    p_new_version       bigint,
    p_activation_record bytea,
    -- NULL: no nonce to consume.
    p_nonce             text,
    p_nonce_owned       boolean,
    p_consumed_at       bigint,
    p_nonce_record      bytea,
    -- NULL: no audit record.
    p_chain             text,
    p_seq               bigint,
    p_prev_hash         bytea,
    p_hash              bytea,
    p_audit_record      bytea
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE activations SET version = p_new_version, record = p_activation_record
        WHERE id = p_activation AND version = p_read_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'OS001', MESSAGE = 'activation missing or changed since read';
    END IF;
    IF p_nonce IS NOT NULL THEN
        UPDATE nonces SET consumed_at = p_consumed_at, record = p_nonce_record
            WHERE nonce = p_nonce AND consumed_at IS NULL AND p_nonce_owned;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'OS002', MESSAGE = 'nonce missing, consumed or not owned';
        END IF;
    END IF;
    IF p_chain IS NOT NULL THEN
        UPDATE audit_chains SET head_seq = p_seq, head_hash = p_hash
            WHERE chain_id = p_chain AND head_seq = p_seq - 1 AND head_hash = p_prev_hash;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'OS003', MESSAGE = 'audit lane head moved';
        END IF;
        INSERT INTO audit_records (chain_id, seq, record) VALUES (p_chain, p_seq, p_audit_record);
    END IF;
END
$$;

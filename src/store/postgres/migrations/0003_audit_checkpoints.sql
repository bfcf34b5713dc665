-- Schema version 3: signed audit checkpoints and the id of the HSM's audit signing key.

-- At most one row: the audit key id recorded at first start. As for storage_keys, the primary key on
-- a constant is what makes two instances starting at once agree on one key.
CREATE TABLE audit_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key_id    bytea NOT NULL CHECK (length(key_id) = 16)
);

-- One row per signed checkpoint. No foreign key to audit_chains: a checkpoint must outlive whatever
-- happens to the chain it covers, so that `audit verify` can report the chain as missing.
CREATE TABLE audit_checkpoints (
    chain_id text COLLATE "C" NOT NULL,
    seq      bigint NOT NULL CHECK (seq >= 0),
    -- codec::encode_checkpoint.
    record   bytea NOT NULL,
    PRIMARY KEY (chain_id, seq)
);

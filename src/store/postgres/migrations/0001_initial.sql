-- Schema version 1 of the PostgreSQL store. Applied once, inside the migration transaction that holds the
-- schema advisory lock; never edited after release (a change is a new numbered file).
--
-- Every record is the versioned binary encoding of `src/store/codec.rs` in `record`, the one source of
-- truth for its layout. The other columns are copies of fields the database must index, compare or lock
-- on; they are written from the same value in the same statement and never read back as the record.
-- Text keys use the "C" collation so that ordered reads match sled's byte order.

CREATE TABLE applications (
    id     text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);

CREATE TABLE activations (
    id      text COLLATE "C" PRIMARY KEY,
    -- Compare-and-swap revision (a copy of the record's `version`).
    version bigint NOT NULL,
    record  bytea NOT NULL
);

CREATE TABLE nonces (
    nonce       text COLLATE "C" PRIMARY KEY,
    -- Unix milliseconds (copies of the record's fields) for pruning and the consumption guard.
    expires_at  bigint NOT NULL,
    consumed_at bigint,
    record      bytea NOT NULL
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);

CREATE TABLE credentials (
    client_token text COLLATE "C" PRIMARY KEY,
    record       bytea NOT NULL
);

-- At most one row: the KEK and DEK ids recorded at first start. The primary key on a constant is what
-- makes two instances starting at once agree on one pair.
CREATE TABLE storage_keys (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    kek       bytea NOT NULL CHECK (length(kek) = 16),
    dek       bytea NOT NULL CHECK (length(dek) = 16)
);

-- One audit chain per writing instance. The head row is the chain's only lock: an append takes it
-- (SELECT ... FOR UPDATE) as the last step of its transaction.
CREATE TABLE audit_chains (
    chain_id  text COLLATE "C" PRIMARY KEY,
    head_seq  bigint NOT NULL CHECK (head_seq >= 0),
    head_hash bytea NOT NULL CHECK (length(head_hash) = 32)
);

CREATE TABLE audit_records (
    chain_id text COLLATE "C" NOT NULL REFERENCES audit_chains (chain_id),
    seq      bigint NOT NULL CHECK (seq >= 1),
    -- codec::encode_audit: the hashed canonical bytes followed by the hash.
    record   bytea NOT NULL,
    PRIMARY KEY (chain_id, seq)
);

-- Readiness probes: one row per chain (instance), rewritten by every probe.
CREATE TABLE probes (
    chain_id  text COLLATE "C" PRIMARY KEY,
    probed_at bigint NOT NULL
);

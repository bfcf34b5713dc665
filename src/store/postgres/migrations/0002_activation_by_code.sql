-- Schema version 2: activation by code (protocol 3.3). Records stay the codec's encodings in `record`;
-- the new tables are indexes and the two short-lived ECIES sets.

-- Application key -> application: each key of each version, unique across all applications.
CREATE TABLE application_keys (
    application_key text COLLATE "C" PRIMARY KEY,
    application_id  text COLLATE "C" NOT NULL REFERENCES applications (id)
);

-- (application, activation code) -> activation, written with the activation and never reused.
CREATE TABLE activation_codes (
    application_id  text COLLATE "C" NOT NULL,
    activation_code text COLLATE "C" NOT NULL,
    activation_id   text COLLATE "C" NOT NULL REFERENCES activations (id),
    PRIMARY KEY (application_id, activation_code)
);

-- Temporary ECIES key pairs (private half wrapped under the KEK inside `record`).
CREATE TABLE temporary_keys (
    id         text COLLATE "C" PRIMARY KEY,
    -- Unix milliseconds (a copy of the record's field) for pruning.
    expires_at bigint NOT NULL,
    record     bytea NOT NULL
);
CREATE INDEX temporary_keys_by_expiry ON temporary_keys (expires_at);

-- The ECIES replay registry: one row per accepted request until its timestamp leaves the window.
CREATE TABLE ecies_replays (
    replay_key text COLLATE "C" PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX ecies_replays_by_expiry ON ecies_replays (expires_at);

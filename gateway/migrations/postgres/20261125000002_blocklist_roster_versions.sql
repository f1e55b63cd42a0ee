-- PostgreSQL and CockroachDB: plain TEXT/BIGINT, no Postgres-only types.
-- XEP-0191 block lists: one row per blocked JID (bare, full or a domain).
CREATE TABLE blocklist (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    jid TEXT NOT NULL,
    PRIMARY KEY (host, username, jid)
);

-- XEP-0237 roster versioning: bumped in the transaction that changes the
-- roster; no row means a roster never written (version 0).
CREATE TABLE roster_versions (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (host, username)
);

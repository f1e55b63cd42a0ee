-- PostgreSQL and CockroachDB: plain TEXT/BIGINT, no Postgres-only types.
-- XEP-0012 last activity: when each account's last session closed (seconds
-- since the Unix epoch) and the status of its last unavailable presence.
CREATE TABLE last_activity (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (host, username)
);

-- XEP-0313 message archive (user archives). id orders the archive: the
-- microseconds since the epoch when the message was archived, shifted left
-- 8 bits, plus a sequence in the low bits (unique per node; it is also the
-- XEP-0359 stanza-id). peer_bare/peer_resource are the other party;
-- outgoing is 1 for messages the owner sent. xml is the message as routed.
-- The primary key serves every page query of one archive (with start/end
-- turned into id bounds); the peer index serves queries filtered by `with`.
-- There is deliberately no index on id alone: PostgreSQL would pick it for
-- an archive's first page and scan everyone else's rows (measured: 277 ms
-- at 1M rows, against 0.07 ms on the primary key). The hourly retention
-- purge scans the table instead. Plain TEXT/BIGINT (CockroachDB-safe).
CREATE TABLE mam_messages (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    id BIGINT NOT NULL,
    peer_bare TEXT NOT NULL,
    peer_resource TEXT NOT NULL,
    outgoing SMALLINT NOT NULL,
    xml TEXT NOT NULL,
    PRIMARY KEY (host, username, id)
);
CREATE INDEX mam_messages_peer ON mam_messages (host, username, peer_bare, id);

-- XEP-0313 §6 preferences: default_mode always | roster | never;
-- always_jids / never_jids: bare JIDs, one per line.
CREATE TABLE mam_prefs (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    default_mode TEXT NOT NULL,
    always_jids TEXT NOT NULL,
    never_jids TEXT NOT NULL,
    PRIMARY KEY (host, username)
);

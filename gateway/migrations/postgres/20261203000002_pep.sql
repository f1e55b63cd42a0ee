-- PostgreSQL and CockroachDB: plain TEXT/BIGINT/BOOLEAN, no Postgres-only types.
-- XEP-0163 Personal Eventing Protocol: each account's nodes (their
-- XEP-0060 configuration) and their items. max_items NULL is "max" (the
-- server's cap); send_last is never | on_sub | on_sub_and_presence.
CREATE TABLE pep_nodes (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    node TEXT NOT NULL,
    access_model TEXT NOT NULL,
    persist_items BOOLEAN NOT NULL,
    max_items BIGINT NULL,
    send_last TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (host, username, node)
);

-- One row per item: the payload as serialised XML; seq orders a node's
-- items (the newest has the largest), assigned under the account's lock;
-- published_at in ms since the epoch.
CREATE TABLE pep_items (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    node TEXT NOT NULL,
    item_id TEXT NOT NULL,
    publisher TEXT NOT NULL,
    xml TEXT NOT NULL,
    seq BIGINT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (host, username, node, item_id)
);
CREATE INDEX pep_items_by_seq ON pep_items (host, username, node, seq);

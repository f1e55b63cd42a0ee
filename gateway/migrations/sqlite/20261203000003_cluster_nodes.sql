-- Cluster discovery (CETS's RDBMS discovery): each node's row, refreshed
-- every heartbeat; a row older than node_timeout is a node gone. Times in
-- ms since the epoch. Plain TEXT/BIGINT (CockroachDB-safe).
CREATE TABLE cluster_nodes (
    node TEXT NOT NULL,
    address TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    PRIMARY KEY (node)
);

-- Accounts hold SCRAM keys only (never a password).
CREATE TABLE accounts (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    scram_sha1 TEXT NOT NULL,
    scram_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (host, username)
);

CREATE TABLE roster_items (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    name TEXT,
    subscription TEXT NOT NULL,
    ask BOOLEAN NOT NULL,
    groups_json TEXT NOT NULL,
    PRIMARY KEY (host, username, contact)
);

-- Inbound subscription requests awaiting the user's answer (RFC 6121 §3.1.3).
CREATE TABLE subscription_requests (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    contact TEXT NOT NULL,
    stanza TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (host, username, contact)
);

CREATE TABLE offline_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    stanza TEXT NOT NULL,
    stored_at BIGINT NOT NULL
);
CREATE INDEX offline_messages_by_user ON offline_messages (host, username, id);

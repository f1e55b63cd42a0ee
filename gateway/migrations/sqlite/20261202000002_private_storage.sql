-- XEP-0049 private XML storage: one element per (account, namespace of
-- the element), stored as serialised XML; updated_at in ms since the epoch.
CREATE TABLE private_storage (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    namespace TEXT NOT NULL,
    xml TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (host, username, namespace)
);

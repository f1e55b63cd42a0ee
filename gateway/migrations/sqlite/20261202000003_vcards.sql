-- XEP-0054 vcard-temp: one vCard per account, stored as serialised XML;
-- photo_hash is the SHA-1 hex of the decoded PHOTO/BINVAL ("" without a
-- photo, XEP-0153); updated_at in ms since the epoch.
CREATE TABLE vcards (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    xml TEXT NOT NULL,
    photo_hash TEXT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (host, username)
);

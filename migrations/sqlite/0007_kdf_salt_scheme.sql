-- Issue 17.9: which Argon2id salt an account's keys were derived with. 1: the server's 16
-- bytes as they are (accounts made before this migration); 2: the salt bound to the account's
-- address (docs/protocol.md §4.2), what every client now makes. New rows get 2; a re-key,
-- password change or recovery sets 2. Kept in step with ../postgres/.
ALTER TABLE users ADD COLUMN kdf_salt_scheme INTEGER NOT NULL DEFAULT 2;
UPDATE users SET kdf_salt_scheme = 1;

-- Issue 15.3: an administrator's key reset of a staff account that lost password and recovery
-- kit. The one-time code (mailed to the user, stored as HMAC(pepper, "key-reset" ‖ code))
-- lets the user make new keys for the same id; completing it appends a kind 10 entry naming
-- the administrator.
CREATE TABLE key_resets (
    code_mac BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    admin_id TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);

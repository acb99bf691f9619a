-- Issue 15.3, the patient's path: a patient who lost password and recovery kit proves the
-- address again (`verify-email` mails a key-reset code for an address that has a patient
-- account); that code has no administrator, so `admin_id` may be NULL (the kind 10 entry then
-- says `by = 2`, authoriser nil). SQLite cannot drop NOT NULL in place: the table is rebuilt.
-- Kept in step with ../postgres/.
CREATE TABLE key_resets_new (
    code_mac BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    admin_id TEXT REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
INSERT INTO key_resets_new (code_mac, user_id, admin_id, created_at, expires_at, used_at)
    SELECT code_mac, user_id, admin_id, created_at, expires_at, used_at FROM key_resets;
DROP TABLE key_resets;
ALTER TABLE key_resets_new RENAME TO key_resets;

-- A re-wrap request after a key rotation: a grant whose reader is the rotated user and whose
-- approval is the kind 10 entry itself (approval_index), made for each report the user held
-- as its patient or author. Only the report's other key holder may wrap it, by hand.
ALTER TABLE grants ADD COLUMN rewrap INTEGER NOT NULL DEFAULT 0;

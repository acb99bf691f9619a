-- Issue 15: TOTP second factor for staff. The secret is sealed (AES-256-GCM) under a key
-- derived from the server's secrets file, so a database reader cannot compute codes; recovery
-- codes and pending-login tokens are stored as HMACs only. Kept in step with ../sqlite/.
CREATE TABLE totp (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    secret_sealed BYTEA NOT NULL,
    -- NULL until the first code confirms the enrolment.
    confirmed_at BIGINT,
    -- The newest time step accepted: a code counts once, and older steps never again.
    last_step BIGINT NOT NULL DEFAULT -1,
    created_at BIGINT NOT NULL
);
CREATE TABLE totp_recovery (
    user_id TEXT NOT NULL REFERENCES users(id),
    code_mac BYTEA NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, code_mac)
);
-- The password step of a login of an account that needs a code: bound to the account, short
-- lived, used once.
CREATE TABLE login_pending (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX login_pending_expires ON login_pending (expires_at);

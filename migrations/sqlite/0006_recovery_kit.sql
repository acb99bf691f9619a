-- Issue 15: the recovery kit. A second copy of the key bundle sealed under a key derived from
-- the user's recovery code, and HMAC(pepper, recovery_auth) to check the code; the code itself
-- never reaches the server. Kept in step with ../postgres/.
ALTER TABLE users ADD COLUMN recovery_mac BLOB;
ALTER TABLE users ADD COLUMN recovery_bundle BLOB;

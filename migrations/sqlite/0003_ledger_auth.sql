-- Issue 11: every ledger entry carries an authenticator only a holder of the secrets file
-- can make (HMAC-SHA256 under a key derived from the pepper, over the index and leaf hash).
-- Entries appended before this migration get one at the first start after it, and only when
-- a head signed by the ledger key covers them (see docs/protocol.md, "Append authenticators").
-- Kept in step with ../postgres/.
ALTER TABLE ledger_entries ADD COLUMN auth BLOB;

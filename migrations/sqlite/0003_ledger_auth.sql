-- Issue 11: every ledger entry carries an authenticator only a holder of the secrets file
-- can make (HMAC-SHA256 under a key derived from the pepper, over the index and leaf hash).
-- Entries appended before this migration get one at the first start after it, and only when
-- a head signed by the ledger key covers them (see docs/protocol.md, "Append authenticators").
-- Kept in step with ../postgres/.
ALTER TABLE ledger_entries ADD COLUMN auth BLOB;

-- The head as a C2SP checkpoint (signed note) with the witnesses' cosignatures, served with it.
ALTER TABLE ledger_heads ADD COLUMN checkpoint TEXT;

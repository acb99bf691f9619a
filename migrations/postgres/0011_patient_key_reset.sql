-- Issue 15.3, the patient's path: a patient who lost password and recovery kit proves the
-- address again (`verify-email` mails a key-reset code for an address that has a patient
-- account); that code has no administrator, so `admin_id` may be NULL (the kind 10 entry then
-- says `by = 2`, authoriser nil). Kept in step with ../sqlite/.
ALTER TABLE key_resets ALTER COLUMN admin_id DROP NOT NULL;

-- A re-wrap request after a key rotation: a grant whose reader is the rotated user and whose
-- approval is the kind 10 entry itself (approval_index), made for each report the user held
-- as its patient or author. Only the report's other key holder may wrap it, by hand.
ALTER TABLE grants ADD COLUMN rewrap BIGINT NOT NULL DEFAULT 0;

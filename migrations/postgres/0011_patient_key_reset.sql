-- Issue 15.3, the patient's path: a patient who lost password and recovery kit proves the
-- address again (`verify-email` mails a key-reset code for an address that has a patient
-- account); that code has no administrator, so `admin_id` may be NULL (the kind 10 entry then
-- says `by = 2`, authoriser nil). Kept in step with ../sqlite/.
ALTER TABLE key_resets ALTER COLUMN admin_id DROP NOT NULL;

-- Issue 17: a code request's tries over its whole life (resends no longer give a fresh
-- budget) and how often its code was resent (capped). Kept in step with ../postgres/.
ALTER TABLE otp_requests ADD COLUMN total_tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE otp_requests ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;

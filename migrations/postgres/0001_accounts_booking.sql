-- Accounts, sessions, invites, rate limits, doctor directory, availability and bookings.
-- Times are unix milliseconds; ids are UUID text. Kept in step with ../sqlite/.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_fold TEXT NOT NULL,
    phone TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL,
    auth_mac BYTEA NOT NULL,
    salt BYTEA NOT NULL,
    kdf_m BIGINT NOT NULL,
    kdf_t BIGINT NOT NULL,
    kdf_p BIGINT NOT NULL,
    x25519_pub BYTEA NOT NULL,
    ed25519_pub BYTEA NOT NULL,
    bundle BYTEA NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE doctors (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    specialty TEXT NOT NULL,
    specialty_fold TEXT NOT NULL,
    bio TEXT NOT NULL DEFAULT ''
);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE email_verifications (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    code_mac BYTEA,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    tries BIGINT NOT NULL DEFAULT 0,
    used_at BIGINT
);

CREATE TABLE invites (
    id TEXT PRIMARY KEY,
    code_mac BYTEA NOT NULL UNIQUE,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    specialty TEXT NOT NULL DEFAULT '',
    bio TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE admin_enrollment (
    code_mac BYTEA PRIMARY KEY,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE rate_limits (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE TABLE availability (
    doctor_id TEXT NOT NULL REFERENCES users(id),
    weekday BIGINT NOT NULL,
    start_min BIGINT NOT NULL,
    end_min BIGINT NOT NULL,
    slot_minutes BIGINT NOT NULL,
    PRIMARY KEY (doctor_id, weekday, start_min)
);

CREATE TABLE days_off (
    doctor_id TEXT NOT NULL REFERENCES users(id),
    day TEXT NOT NULL,
    PRIMARY KEY (doctor_id, day)
);

CREATE TABLE bookings (
    id TEXT PRIMARY KEY,
    doctor_id TEXT NOT NULL REFERENCES users(id),
    patient_id TEXT NOT NULL REFERENCES users(id),
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    booked_by TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- One live booking per doctor slot, whatever the concurrency.
CREATE UNIQUE INDEX bookings_doctor_slot ON bookings(doctor_id, starts_at) WHERE status <> 'cancelled';
CREATE INDEX bookings_patient ON bookings(patient_id, starts_at);
CREATE INDEX bookings_doctor ON bookings(doctor_id, starts_at);

-- Five-minute quanta a live booking occupies, for its doctor ('d:' id) and its patient
-- ('p:' id): the primary key refuses any overlap, even between slots of different lengths.
CREATE TABLE booking_holds (
    holder TEXT NOT NULL,
    quantum BIGINT NOT NULL,
    booking_id TEXT NOT NULL REFERENCES bookings(id),
    PRIMARY KEY (holder, quantum)
);
CREATE INDEX booking_holds_booking ON booking_holds(booking_id);

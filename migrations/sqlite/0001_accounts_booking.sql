-- Accounts, sessions, invites, rate limits, doctor directory, availability and bookings.
-- Times are unix milliseconds; ids are UUID text. Kept in step with ../postgres/.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_fold TEXT NOT NULL,
    phone TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL,
    auth_mac BLOB NOT NULL,
    salt BLOB NOT NULL,
    kdf_m INTEGER NOT NULL,
    kdf_t INTEGER NOT NULL,
    kdf_p INTEGER NOT NULL,
    x25519_pub BLOB NOT NULL,
    ed25519_pub BLOB NOT NULL,
    bundle BLOB NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);

CREATE TABLE doctors (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    specialty TEXT NOT NULL,
    specialty_fold TEXT NOT NULL,
    bio TEXT NOT NULL DEFAULT ''
);

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE email_verifications (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    code_mac BLOB,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    used_at INTEGER
);

CREATE TABLE invites (
    id TEXT PRIMARY KEY,
    code_mac BLOB NOT NULL UNIQUE,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    specialty TEXT NOT NULL DEFAULT '',
    bio TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);

CREATE TABLE admin_enrollment (
    code_mac BLOB PRIMARY KEY,
    created_at INTEGER NOT NULL,
    used_at INTEGER
);

CREATE TABLE rate_limits (
    key TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE TABLE availability (
    doctor_id TEXT NOT NULL REFERENCES users(id),
    weekday INTEGER NOT NULL,
    start_min INTEGER NOT NULL,
    end_min INTEGER NOT NULL,
    slot_minutes INTEGER NOT NULL,
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
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    booked_by TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- One live booking per doctor slot, whatever the concurrency.
CREATE UNIQUE INDEX bookings_doctor_slot ON bookings(doctor_id, starts_at) WHERE status <> 'cancelled';
CREATE INDEX bookings_patient ON bookings(patient_id, starts_at);
CREATE INDEX bookings_doctor ON bookings(doctor_id, starts_at);

-- Five-minute quanta a live booking occupies, for its doctor ('d:' id) and its patient
-- ('p:' id): the primary key refuses any overlap, even between slots of different lengths.
CREATE TABLE booking_holds (
    holder TEXT NOT NULL,
    quantum INTEGER NOT NULL,
    booking_id TEXT NOT NULL REFERENCES bookings(id),
    PRIMARY KEY (holder, quantum)
);
CREATE INDEX booking_holds_booking ON booking_holds(booking_id);

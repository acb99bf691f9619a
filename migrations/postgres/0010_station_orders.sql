-- Issue 16: write-only upload stations. A doctor's order lets one station upload reports for
-- one patient until it expires; each order is also ledger entry kind 13 (ledger_index).
-- A station's report records its order and the doctor its key is wrapped to. Kept in step
-- with ../sqlite/.
CREATE TABLE station_orders (
    id TEXT PRIMARY KEY,
    station_id TEXT NOT NULL REFERENCES users(id),
    patient_id TEXT NOT NULL REFERENCES users(id),
    doctor_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ledger_index BIGINT NOT NULL
);
CREATE INDEX station_orders_station ON station_orders(station_id, patient_id, expires_at);
CREATE INDEX station_orders_doctor ON station_orders(doctor_id, created_at);
ALTER TABLE reports ADD COLUMN order_id TEXT;
ALTER TABLE reports ADD COLUMN for_doctor_id TEXT;
CREATE INDEX reports_for_doctor ON reports(for_doctor_id, created_at);

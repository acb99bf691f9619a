//! A clinic for the report tests: doctors, reception, an auditor, patients with visits, and
//! helpers to upload and release reports through the real client library.

use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate, Utc};
use clinvault::api::{Availability, BookRequest, Role, WeeklyBlock};
use clinvault::client::ledger::Ledger;
use clinvault::client::reports::{UploadOptions, upload};
use clinvault::client::{ApiClient, ClientError, LoggedIn};
use uuid::Uuid;

use super::{Db, PASSWORD, TestServer, six_digits, start_with};

pub fn every_day(start: &str, end: &str, len: u32) -> Vec<WeeklyBlock> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| WeeklyBlock {
            weekday: d.to_string(),
            start: start.into(),
            end: end.into(),
            slot_minutes: len,
        })
        .collect()
}

fn day(n: i64) -> NaiveDate {
    (Utc::now().with_timezone(&chrono_tz::Europe::Berlin) + Duration::days(n)).date_naive()
}

/// A user with keys unsealed, their client, and a state folder of their own.
pub struct User {
    pub c: ApiClient,
    pub me: LoggedIn,
    pub id: Uuid,
    pub email: String,
    pub state: tempfile::TempDir,
}

impl User {
    pub async fn ledger(&self) -> Result<Ledger, ClientError> {
        Ledger::sync(&self.c, self.state.path(), None, 3600).await
    }
}

pub async fn user(ts: &TestServer, email: &str) -> User {
    let mut c = ts.client();
    let me = c.login(email, PASSWORD).await.expect("login");
    User {
        id: me.login.user.id,
        c,
        me,
        email: email.into(),
        state: tempfile::tempdir().expect("state dir"),
    }
}

pub struct Clinic {
    pub ts: TestServer,
    pub doc: User,
    pub doc2: User,
    pub rec: User,
    pub auditor: User,
    pub admin: User,
    pub pat: User,
    pub pat2: User,
}

/// Two doctors, reception, an auditor, two patients; the first patient has a completed visit
/// with the first doctor and a booking with the second.
pub async fn clinic_with(db: Db, tweak: impl FnOnce(&mut clinvault::config::Config)) -> Clinic {
    let ts = start_with(db, tweak).await;
    let admin_c = ts.admin().await;
    let (doc_c, doc_id) = ts
        .staff(
            &admin_c,
            Role::Doctor,
            "house@clinic.test",
            "Greg House",
            "Cardiology",
        )
        .await;
    let (doc2_c, doc2_id) = ts
        .staff(
            &admin_c,
            Role::Doctor,
            "wilson@clinic.test",
            "James Wilson",
            "Oncology",
        )
        .await;
    ts.staff(
        &admin_c,
        Role::Reception,
        "desk@clinic.test",
        "Rita Desk",
        "",
    )
    .await;
    ts.staff(
        &admin_c,
        Role::Auditor,
        "audit@clinic.test",
        "Otto Audit",
        "",
    )
    .await;
    let (p, _) = ts.patient("pat@clinic.test", "Patricia Patient").await;
    ts.patient("pat2@clinic.test", "Pete Other").await;
    for (c, id) in [(&doc_c, doc_id), (&doc2_c, doc2_id)] {
        c.set_availability(
            id,
            &Availability {
                weekly: every_day("09:00", "12:00", 20),
                days_off: vec![],
            },
        )
        .await
        .expect("availability");
    }
    let rec = user(&ts, "desk@clinic.test").await;
    for (doctor, start_slot) in [(doc_id, 0usize), (doc2_id, 2)] {
        let slots = p
            .slots(doctor, Some(day(1)), Some(day(1)))
            .await
            .unwrap()
            .slots;
        let b = p
            .book(&BookRequest {
                doctor_id: doctor,
                start: slots[start_slot].start,
                patient_id: None,
            })
            .await
            .expect("book");
        if doctor == doc_id {
            super::backdate_booking(ts.handle.db(), b.id).await;
            rec.c
                .booking_action(b.id, "check-in")
                .await
                .expect("check in");
            doc_c
                .booking_action(b.id, "complete")
                .await
                .expect("complete");
        }
    }
    Clinic {
        doc: user(&ts, "house@clinic.test").await,
        doc2: user(&ts, "wilson@clinic.test").await,
        auditor: user(&ts, "audit@clinic.test").await,
        admin: user(&ts, "admin@clinic.test").await,
        pat: user(&ts, "pat@clinic.test").await,
        pat2: user(&ts, "pat2@clinic.test").await,
        rec,
        ts,
    }
}

/// `len` random bytes with `marker` planted at a few places.
pub fn report_bytes(len: usize, marker: &[u8]) -> Vec<u8> {
    let mut data = vec![0u8; len];
    getrandom::fill(&mut data).expect("random");
    for at in [0, len / 3, len / 2 + 7, len - marker.len()] {
        data[at..at + marker.len()].copy_from_slice(marker);
    }
    data
}

pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write report file");
    p
}

pub async fn upload_file(
    c: &Clinic,
    file: &Path,
    title: &str,
) -> clinvault::client::reports::UploadOutcome {
    let l = c.doc.ledger().await.expect("doctor's ledger");
    upload(
        &c.doc.c,
        &c.doc.me,
        &l,
        c.pat.id,
        file,
        &upload_options(&c.doc, 4, title),
    )
    .await
    .expect("upload")
}

/// Upload options for `user`: 1 MiB chunks, their own state folder, no cancel, no progress.
pub fn upload_options<'a>(user: &'a User, transfers: usize, title: &str) -> UploadOptions<'a> {
    UploadOptions {
        state_dir: user.state.path(),
        chunk_size: 1024 * 1024,
        transfers,
        title: title.into(),
        note: String::new(),
        cancel: None,
        progress: None,
    }
}

/// The patient enters the release code from the newest mail.
pub async fn release(c: &Clinic) {
    let code = six_digits(&c.ts.last_mail(&c.pat.email));
    let pending = c.pat.c.otp_pending().await.expect("pending codes");
    assert_eq!(pending.len(), 1, "one release code waits");
    c.pat
        .c
        .otp_verify(pending[0].request_id, &code)
        .await
        .expect("release code accepted");
}

/// What a doctor's client does before a commit, for tests that commit by hand: opens a report
/// of `data` for the clinic's patient and sends it in 16 KiB chunks sealed under `dek`.
/// Returns the summary and the chunk ids the manifest and the commit need.
pub async fn send_sealed_chunks(
    c: &Clinic,
    report_id: Uuid,
    dek: &clinvault::seal::Dek,
    data: &[u8],
) -> (clinvault::seal::SealSummary, Vec<[u8; 32]>) {
    const CHUNK: u32 = 16 * 1024;
    let sealer =
        clinvault::seal::ChunkSealer::new(dek, *report_id.as_bytes(), CHUNK, data.len() as u64)
            .unwrap();
    c.doc
        .c
        .open_report(&clinvault::api::OpenReportRequest {
            report_id,
            patient_id: c.pat.id,
            chunk_size: CHUNK,
            plaintext_len: data.len() as u64,
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..sealer.n_chunks() {
        let (off, len) = sealer.chunk_range(i).unwrap();
        let ch = sealer
            .seal(i, data[off as usize..off as usize + len].to_vec())
            .unwrap();
        c.doc
            .c
            .put_chunk(report_id, &ch.chunk_id, ch.ciphertext.into())
            .await
            .unwrap();
        ids.push(ch.chunk_id);
    }
    (sealer.summary(&ids).unwrap(), ids)
}

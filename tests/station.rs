//! Issue 16 part 2: write-only upload stations, through the real client library and server.
//! A station uploads under a doctor's order; the patient and the doctor read it; the station
//! reads nothing, not even its own upload; the ledger shows it as the signer.

mod common;

use clinvault::api::{OrderInfo, OrderRequest, Role, codes};
use clinvault::client::ClientError;
use clinvault::client::reports::{TransferOptions, UploadOptions, download, verify_report};
use clinvault::client::station::upload_for_order;
use clinvault::client::upload::{UploadTarget, upload_to};
use clinvault::ledger::Entry;
use common::clinic::{Clinic, User, clinic_with, release, report_bytes, user, write_file};
use common::{Db, http};
use uuid::Uuid;

async fn clinic_and_station(db: Db) -> (Clinic, User) {
    let c = clinic_with(db, |_| {}).await;
    let admin = c.ts.login("admin@clinic.test").await;
    c.ts.staff(&admin, Role::Station, "lab1@clinic.test", "Lab-1", "")
        .await;
    let station = user(&c.ts, "lab1@clinic.test").await;
    (c, station)
}

fn options(u: &User) -> UploadOptions<'_> {
    UploadOptions {
        state_dir: u.state.path(),
        chunk_size: 16 * 1024,
        transfers: 2,
        title: "Lab panel".into(),
        note: String::new(),
        cancel: None,
        progress: None,
    }
}

async fn order_for(doctor: &User, patient: Uuid) -> OrderInfo {
    doctor
        .c
        .create_order(&OrderRequest {
            station: "Lab-1".into(),
            patient_id: patient,
            days: None,
        })
        .await
        .expect("order")
}

/// The `.state` files left in a user's upload-state folder.
fn states(u: &User) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(u.state.path().join("uploads")) {
        Ok(d) => d
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "state"))
            .collect(),
        Err(_) => vec![],
    }
}

async fn station_journey(db: Db) {
    let (c, station) = clinic_and_station(db).await;
    let dir = tempfile::tempdir().unwrap();
    let data = report_bytes(200 * 1024 + 17, b"LAB-RESULT");
    let file = write_file(dir.path(), "panel.bin", &data);

    // Without an order the server refuses to open a report for the patient.
    let refused = station
        .c
        .open_report(&clinvault::api::OpenReportRequest {
            report_id: Uuid::new_v4(),
            patient_id: c.pat.id,
            chunk_size: 16 * 1024,
            plaintext_len: data.len() as u64,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(codes::NO_ORDER), "{refused}");
    // A doctor orders only for a patient they have a booking with.
    let no_booking = c
        .doc
        .c
        .create_order(&OrderRequest {
            station: "Lab-1".into(),
            patient_id: c.pat2.id,
            days: None,
        })
        .await
        .unwrap_err();
    assert_eq!(no_booking.code(), Some(codes::NO_VISIT), "{no_booking}");

    let order = order_for(&c.doc, c.pat.id).await;
    assert_eq!(order.station_name, "Lab-1");
    let listed = station.c.orders().await.unwrap().orders;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, order.id);
    let sl = station.ledger().await.unwrap();
    let out = upload_for_order(
        &station.c,
        &station.me,
        &sl,
        &listed[0],
        &file,
        &options(&station),
        None,
    )
    .await
    .expect("station uploads");
    let id = out.report_id;
    // Nothing of the key stays with the station: its resume state is gone.
    assert!(states(&station).is_empty(), "{:?}", states(&station));

    // The doctor: in their list, readable, and the origin checked against the ledger.
    let mine = c.doc.c.reports(None).await.unwrap().reports;
    assert!(mine.iter().any(|r| r.id == id && r.readable));
    let dl = c.doc.ledger().await.unwrap();
    let got = dir.path().join("doctor.bin");
    let v = download(&c.doc.c, &c.doc.me, &dl, id, &got, &TransferOptions::new(2))
        .await
        .expect("the doctor reads it");
    assert_eq!(std::fs::read(&got).unwrap(), data);
    let origin = v.origin.clone().expect("a station's report has an origin");
    assert_eq!(origin.station_id, station.id);
    assert_eq!(origin.doctor_id, c.doc.id);
    assert_eq!(
        origin.to_string(),
        "submitted by station Lab-1 for Dr Greg House"
    );

    // The ledger: the station's kind-1 entry says station, the manifest verifies under its
    // key, and the key was wrapped by it to the patient and the doctor only.
    let keys = dl.user_keys(station.id, None).await.unwrap();
    assert_eq!(keys.role, Role::Station);
    let detail = c.doc.c.report(id).await.unwrap();
    assert_eq!(detail.summary.author_id, station.id);
    clinvault::seal::verify_manifest(
        &detail.manifest,
        &detail.signature,
        &keys.public_keys.ed25519,
    )
    .expect("signed by the station");
    let entries = dl.entries(0, dl.head().tree_size).await.unwrap();
    let mut readers: Vec<[u8; 16]> = entries
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::KeyWrapped {
                report_id,
                reader_id,
                wrapper_id,
                ..
            } if *report_id == id.into_bytes() => {
                assert_eq!(*wrapper_id, station.id.into_bytes());
                Some(*reader_id)
            }
            _ => None,
        })
        .collect();
    readers.sort();
    let mut want = vec![c.pat.id.into_bytes(), c.doc.id.into_bytes()];
    want.sort();
    assert_eq!(
        readers, want,
        "wrapped to patient and doctor, never the station"
    );
    assert!(entries.iter().any(|(i, e)| *i == order.ledger_index
        && matches!(e, Entry::StationOrder { station_id, doctor_id, .. }
            if *station_id == station.id.into_bytes() && *doctor_id == c.doc.id.into_bytes())));

    // The patient: the mail names the station and the doctor; after the code, theirs.
    let mail = c.ts.last_mail(&c.pat.email);
    assert!(
        mail.contains("Station Lab-1 (for Dr Greg House) has added a report"),
        "{mail}"
    );
    release(&c).await;
    let pl = c.pat.ledger().await.unwrap();
    let pv = clinvault::client::reports::verify(&c.pat.c, &c.pat.me, &pl, id, 2)
        .await
        .expect("the patient reads it");
    assert_eq!(pv.origin.unwrap(), origin);

    // The station: every read route refuses, its own upload included.
    let chunk = detail.chunk_ids[0].clone();
    let tok = station.c.token().unwrap().to_string();
    for path in [
        "/v1/reports".to_string(),
        format!("/v1/reports?patient={}", c.pat.id),
        format!("/v1/reports/{id}"),
        format!("/v1/reports/{id}/key"),
        format!("/v1/reports/{id}/chunks/0"),
        format!("/v1/reports/{id}/order"),
        format!("/v1/chunks/{chunk}"),
        "/v1/grants".to_string(),
        "/v1/otp".to_string(),
        "/v1/patients?q=pat".to_string(),
        "/v1/bookings".to_string(),
    ] {
        let r = http()
            .get(format!("{}{}", c.ts.url, path))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 403 | 404),
            "station on GET {path}: {}",
            r.status()
        );
    }
    let err = verify_report(&station.c, &station.me, &sl, id)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Server { status: 403, .. }),
        "{err}"
    );
    // Another doctor, without a grant, does not see it either.
    let other = c.doc2.c.report(id).await.unwrap_err();
    assert_eq!(other.code(), Some("not_found"), "{other}");
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(
    station_uploads_patient_and_doctor_read_station_cannot,
    station_journey
);

async fn station_attacks(db: Db) {
    let (c, station) = clinic_and_station(db).await;
    let dir = tempfile::tempdir().unwrap();
    let data = report_bytes(40 * 1024, b"SCAN");
    let file = write_file(dir.path(), "scan.bin", &data);
    // An older order by another doctor of the patient's, then the one the upload goes under.
    let older = order_for(&c.doc2, c.pat.id).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let ordered = order_for(&c.doc, c.pat.id).await;
    let sl = station.ledger().await.unwrap();
    let db = c.ts.handle.db();

    // An order for one patient does not open another patient's reports.
    let err = station
        .c
        .open_report(&clinvault::api::OpenReportRequest {
            report_id: Uuid::new_v4(),
            patient_id: c.pat2.id,
            chunk_size: 16 * 1024,
            plaintext_len: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::NO_ORDER), "{err}");

    // A station that wraps the key to itself, or to a doctor who did not order, is refused
    // at commit.
    let own = station.me.secrets.public().x25519;
    let doc2_keys = sl.user_keys(c.doc2.id, Some(Role::Doctor)).await.unwrap();
    for co in [(station.id, own), (c.doc2.id, doc2_keys.public_keys.x25519)] {
        let err = upload_to(
            &station.c,
            &station.me,
            &sl,
            c.pat.id,
            &file,
            &options(&station),
            UploadTarget {
                co_reader: Some(co),
                report_id: Some(Uuid::new_v4()),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Some(codes::BAD_COMMIT), "{err}");
        assert!(err.to_string().contains("ordering doctor"), "{err}");
    }
    // No wrapped key of any station report was stored.
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM wrapped_keys WHERE reader_id = $1")
        .bind(station.id.to_string())
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(n, 0);

    // The honest upload goes through; then the server lies about its order.
    let orders = station.c.orders().await.unwrap().orders;
    let out = upload_for_order(
        &station.c,
        &station.me,
        &sl,
        &orders[0],
        &file,
        &options(&station),
        None,
    )
    .await
    .unwrap();
    let dl = c.doc.ledger().await.unwrap();
    verify_report(&c.doc.c, &c.doc.me, &dl, out.report_id)
        .await
        .expect("honest order checks out");
    // The server names another genuine order: another doctor's, or one made after the commit.
    let later = order_for(&c.doc, c.pat.id).await;
    let dl = c.doc.ledger().await.unwrap();
    for (other, why) in [
        (older.id, "another doctor"),
        (later.id, "outside its order"),
    ] {
        sqlx::query("UPDATE reports SET order_id = $1 WHERE id = $2")
            .bind(other.to_string())
            .bind(out.report_id.to_string())
            .execute(db)
            .await
            .unwrap();
        let err = verify_report(&c.doc.c, &c.doc.me, &dl, out.report_id)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Ledger(_)) && err.to_string().contains(why),
            "{err}"
        );
    }
    sqlx::query("UPDATE reports SET order_id = $1 WHERE id = $2")
        .bind(ordered.id.to_string())
        .bind(out.report_id.to_string())
        .execute(db)
        .await
        .unwrap();
    sqlx::query("UPDATE station_orders SET patient_id = $1")
        .bind(c.pat2.id.to_string())
        .execute(db)
        .await
        .unwrap();
    let err = verify_report(&c.doc.c, &c.doc.me, &dl, out.report_id)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Ledger(_)), "{err}");
    // …and the station, told of an order the ledger does not hold, wraps nothing.
    let lied = station.c.orders().await.unwrap().orders;
    assert!(lied.is_empty() || lied[0].patient_id == c.pat2.id);
    let mut forged = orders[0].clone();
    forged.doctor_id = c.doc2.id;
    let err = upload_for_order(
        &station.c,
        &station.me,
        &sl,
        &forged,
        &file,
        &options(&station),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Ledger(_)), "{err}");
    sqlx::query("UPDATE station_orders SET patient_id = $1")
        .bind(c.pat.id.to_string())
        .execute(db)
        .await
        .unwrap();

    // An expired order opens nothing.
    sqlx::query("UPDATE station_orders SET expires_at = 1")
        .execute(db)
        .await
        .unwrap();
    let err = station
        .c
        .open_report(&clinvault::api::OpenReportRequest {
            report_id: Uuid::new_v4(),
            patient_id: c.pat.id,
            chunk_size: 16 * 1024,
            plaintext_len: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::NO_ORDER), "{err}");
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(
    station_cannot_wrap_to_itself_or_use_a_false_order,
    station_attacks
);

/// Invites: an administrator can invite a station; the station's kind-1 entry records role 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn station_role_is_in_the_ledger() {
    let (c, station) = clinic_and_station(Db::Sqlite).await;
    let l = c.pat.ledger().await.unwrap();
    let keys = l.user_keys(station.id, None).await.unwrap();
    match Entry::from_bytes(&keys.key_entry).unwrap() {
        Entry::UserRegistered { role, .. } => {
            assert_eq!(role, clinvault::ledger::Role::Station);
            assert_eq!(role as u8, 6);
        }
        e => panic!("{e:?}"),
    }
    c.ts.handle.shutdown().await.unwrap();
}

//! Issue 16: break-glass emergency access, end to end through the real client library and
//! server, on SQLite and (ignored unless asked for) PostgreSQL. Time never sleeps: the release
//! and end times are moved in the database where a test needs the clock to have run.

mod common;

use clinvault::api::Role;
use clinvault::client::ClientError;
use clinvault::client::emergency as em;
use clinvault::client::trail::complete_trail;
use clinvault::ledger::{Entry, TeamChange};
use common::Db;
use common::clinic::{Clinic, User, clinic_with, report_bytes, upload_file, user, write_file};
use uuid::Uuid;

const REASON: &str = "unconscious in the ER, needs last month's ECG";

fn code_of(e: &ClientError) -> &str {
    e.code().unwrap_or("<no server code>")
}

async fn add_to_team(c: &Clinic, who: Uuid) {
    c.admin
        .c
        .emergency_team_change(who, true)
        .await
        .expect("admin adds to the team");
}

async fn escrowed_for(c: &Clinic, report: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT member_id FROM emergency_escrow WHERE report_id = $1 ORDER BY member_id",
    )
    .bind(report.to_string())
    .fetch_all(c.ts.handle.db())
    .await
    .unwrap()
}

/// Uploads a report by the first doctor for the first patient; returns its id and bytes.
async fn report(c: &Clinic, name: &str) -> (Uuid, Vec<u8>) {
    let data = report_bytes(40_000, b"ECG-MARKER");
    let file = write_file(c.doc.state.path(), name, &data);
    (upload_file(c, &file, name).await.report_id, data)
}

/// The whole release path as a team member's client runs it: fetch, verify the kind-12
/// entry, read and verify the report.
async fn read_released(u: &User, request: Uuid, report: Uuid) -> Result<Vec<u8>, ClientError> {
    let mut l = u.ledger().await?;
    let rel = em::released(&u.c, &u.me, &mut l, request).await?;
    let got = em::read_report(&u.c, &u.me, &l, &rel, report, u64::MAX).await?;
    Ok(got.bytes.expect("kept").to_vec())
}

/// A team member reads the patient's report without the patient's code (the patient has not
/// even entered the release code); the patient and the admin are mailed at once; the entry
/// is in the patient's trail; a non-team doctor cannot; other patients stay out.
async fn break_glass(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    add_to_team(&c, c.doc2.id).await;
    let (rid, data) = report(&c, "ecg.bin").await;
    assert_eq!(escrowed_for(&c, rid).await, vec![c.doc2.id.to_string()]);
    // Before break-glass the member reads nothing.
    let e = c.doc2.c.report(rid).await.unwrap_err();
    assert_eq!(code_of(&e), "not_found", "{e}");

    // A non-team doctor (here the author, who is not on the team) cannot break the glass.
    let e = c.doc.c.emergency_open(c.pat.id, REASON).await.unwrap_err();
    assert_eq!(code_of(&e), "not_on_team", "{e}");
    // A reason is mandatory.
    let e = c.doc2.c.emergency_open(c.pat.id, "  ").await.unwrap_err();
    assert_eq!(code_of(&e), "bad_request", "{e}");
    // Another patient: nothing of theirs is escrowed, nothing is released or logged.
    let e = c
        .doc2
        .c
        .emergency_open(c.pat2.id, REASON)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "not_found", "{e}");

    let mails_pat = c.ts.mails_to(&c.pat.email);
    let mails_admin = c.ts.mails_to("admin@clinic.test");
    let req = c
        .doc2
        .c
        .emergency_open(c.pat.id, REASON)
        .await
        .expect("break-glass");
    assert_eq!(req.status, "released");
    assert_eq!(req.report_ids, vec![rid]);
    // Mailed at once, with the reason, to the patient and the admin.
    assert_eq!(c.ts.mails_to(&c.pat.email), mails_pat + 1);
    assert_eq!(c.ts.mails_to("admin@clinic.test"), mails_admin + 1);
    let m = c.ts.last_mail(&c.pat.email);
    assert!(m.contains("Emergency access") && m.contains(REASON), "{m}");
    // The patient is sent to the trail they can open, not to the auditors' command.
    let body = clinvault::tui::tasks::parse_mail(String::new(), &m).body;
    assert!(
        body.contains("`clinvault access`") && !body.contains("clinvault audit"),
        "{body}"
    );
    let m = c.ts.last_mail("admin@clinic.test");
    assert!(m.contains("Break-glass") && m.contains(REASON), "{m}");
    assert!(m.contains(&req.id.to_string()), "{m}");

    // The member reads the report, every check passing, byte for byte.
    assert_eq!(read_released(&c.doc2, req.id, rid).await.unwrap(), data);
    // The other doctor, not the request's reader, gets nothing from it.
    let e = c.doc.c.emergency_keys(req.id).await.unwrap_err();
    assert_eq!(code_of(&e), "not_found", "{e}");
    // The other patient cannot veto or see it.
    let e = c.pat2.c.emergency_veto(req.id).await.unwrap_err();
    assert_eq!(code_of(&e), "not_found", "{e}");
    assert!(c.pat2.c.emergencies().await.unwrap().requests.is_empty());

    // The patient's complete trail holds the kind-12 entry naming the reader, and the
    // server's subject index listed it (no gap).
    let l = c.pat.ledger().await.unwrap();
    let trail = complete_trail(&l, c.pat.state.path(), c.pat.id)
        .await
        .unwrap();
    assert!(trail.omitted_by_server.is_empty());
    let found = trail.entries.iter().find_map(|(i, e)| match e {
        Entry::EmergencyAccess {
            request_id,
            reader_id,
            patient_id,
            ..
        } if *request_id == req.id.into_bytes() => Some((*i, *reader_id, *patient_id)),
        _ => None,
    });
    assert_eq!(
        found,
        Some((
            req.ledger_index,
            c.doc2.id.into_bytes(),
            c.pat.id.into_bytes()
        ))
    );
    // The patient sees the request with its reason; the admin reviews it.
    let mine = c.pat.c.emergencies().await.unwrap().requests;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].reason, REASON);
    let all = c.admin.c.emergencies().await.unwrap().requests;
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![req.id]);
    // The team and its kind-11 entry, as every doctor's client sees it.
    let team = c.doc.c.emergency_team().await.unwrap().members;
    assert_eq!(team.len(), 1);
    let l = c.doc.ledger().await.unwrap();
    match l
        .checked_entry(team[0].ledger_index.unwrap(), &team[0].entry)
        .await
        .unwrap()
    {
        Entry::EmergencyTeam {
            member_id,
            change: TeamChange::Added,
            admin_id,
            ..
        } => {
            assert_eq!(member_id, c.doc2.id.into_bytes());
            assert_eq!(admin_id, c.admin.id.into_bytes());
        }
        e => panic!("not a team entry: {e:?}"),
    }
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(member_reads_without_the_patients_code, break_glass);

/// With a 10-minute wait: nothing before the release time, the patient's veto during the
/// wait stops the request for good; a server that releases before the logged time is caught
/// by the reader's client.
async fn wait_and_veto(db: Db) {
    let c = clinic_with(db, |cfg| cfg.server.emergency_wait_minutes = 10).await;
    add_to_team(&c, c.doc2.id).await;
    let (rid, _) = report(&c, "ecg.bin").await;
    let req = c.doc2.c.emergency_open(c.pat.id, REASON).await.unwrap();
    assert_eq!(req.status, "waiting");
    let wait = req.release_at - req.created_at;
    assert_eq!(wait.num_minutes(), 10, "{wait:?}");
    let m = c.ts.last_mail(&c.pat.email);
    assert!(
        m.contains(&format!("clinvault emergency veto {}", req.id)),
        "{m}"
    );
    let e = c.doc2.c.emergency_keys(req.id).await.unwrap_err();
    assert_eq!(code_of(&e), "not_yet", "{e}");
    assert_eq!(
        code_of(&c.doc2.c.report(rid).await.unwrap_err()),
        "not_found"
    );

    // The veto, during the wait.
    let admin_mails = c.ts.mails_to("admin@clinic.test");
    let v = c.pat.c.emergency_veto(req.id).await.expect("veto");
    assert_eq!(v.status, "vetoed");
    assert_eq!(c.ts.mails_to("admin@clinic.test"), admin_mails + 1);
    assert!(c.ts.last_mail(&c.doc2.email).contains("vetoed"));
    // The wait runs out (moved in the database): still nothing.
    let db = c.ts.handle.db();
    let past = chrono::Utc::now().timestamp_millis() - 1000;
    sqlx::query("UPDATE emergency_requests SET release_at = $1 WHERE id = $2")
        .bind(past)
        .bind(req.id.to_string())
        .execute(db)
        .await
        .unwrap();
    let e = c.doc2.c.emergency_keys(req.id).await.unwrap_err();
    assert_eq!(code_of(&e), "invalid_status", "{e}");
    assert_eq!(
        code_of(&c.doc2.c.report(rid).await.unwrap_err()),
        "not_found"
    );

    // A second request; an operator releases it early in the database. The server serves
    // the keys, but the reader's client compares with the release time in the ledger.
    let req2 = c.doc2.c.emergency_open(c.pat.id, REASON).await.unwrap();
    sqlx::query("UPDATE emergency_requests SET release_at = $1 WHERE id = $2")
        .bind(past)
        .bind(req2.id.to_string())
        .execute(db)
        .await
        .unwrap();
    let e = read_released(&c.doc2, req2.id, rid)
        .await
        .map(|b| b.len())
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Ledger(ref m) if m.contains("before the time its ledger entry records")),
        "{e}"
    );
    // Too late to veto a released request.
    let e = c.pat.c.emergency_veto(req2.id).await.unwrap_err();
    assert_eq!(code_of(&e), "invalid_status", "{e}");
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(veto_during_the_wait, wait_and_veto);

/// Attacks: a member put on the team by a database edit alone gets no wrap; a removed member
/// gets nothing more; a released request cannot be replayed after its hour nor stretched to
/// later reports; a release whose ledger entry is missing or another is refused.
async fn attacks(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let admin_c = c.ts.login("admin@clinic.test").await;
    let (_, cuddy) =
        c.ts.staff(
            &admin_c,
            Role::Doctor,
            "cuddy@clinic.test",
            "Lisa Cuddy",
            "Endocrinology",
        )
        .await;
    let (_, chase) =
        c.ts.staff(
            &admin_c,
            Role::Doctor,
            "chase@clinic.test",
            "Rob Chase",
            "Intensive care",
        )
        .await;
    add_to_team(&c, c.doc2.id).await;
    let db = c.ts.handle.db();
    // Database-only members: one with no ledger entry, one pointing at doc2's genuine entry.
    let doc2_index: i64 =
        sqlx::query_scalar("SELECT ledger_index FROM emergency_team WHERE user_id = $1")
            .bind(c.doc2.id.to_string())
            .fetch_one(db)
            .await
            .unwrap();
    for (who, index) in [(cuddy, None), (chase, Some(doc2_index))] {
        sqlx::query(
            "INSERT INTO emergency_team (user_id, added_by, added_at, ledger_index) VALUES ($1, $2, 0, $3)",
        )
        .bind(who.to_string())
        .bind(c.admin.id.to_string())
        .bind(index)
        .execute(db)
        .await
        .unwrap();
    }
    let (rid, data) = report(&c, "ecg.bin").await;
    assert_eq!(
        escrowed_for(&c, rid).await,
        vec![c.doc2.id.to_string()],
        "the client wraps to ledger-verified members only"
    );
    let cuddy_u = user(&c.ts, "cuddy@clinic.test").await;
    let e = cuddy_u
        .c
        .emergency_open(c.pat.id, REASON)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "not_found", "nothing escrowed for them: {e}");

    // A release whose ledger index points at another entry (a server that released without
    // logging and reuses an old entry) is refused; so is a reason changed in the database.
    let req = c.doc2.c.emergency_open(c.pat.id, REASON).await.unwrap();
    sqlx::query("UPDATE emergency_requests SET ledger_index = $1 WHERE id = $2")
        .bind(doc2_index)
        .bind(req.id.to_string())
        .execute(db)
        .await
        .unwrap();
    let e = read_released(&c.doc2, req.id, rid)
        .await
        .map(|b| b.len())
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Ledger(ref m) if m.contains("without a matching ledger entry")),
        "{e}"
    );
    sqlx::query(
        "UPDATE emergency_requests SET ledger_index = $1, reason = 'routine check' WHERE id = $2",
    )
    .bind(req.ledger_index as i64)
    .bind(req.id.to_string())
    .execute(db)
    .await
    .unwrap();
    let e = read_released(&c.doc2, req.id, rid)
        .await
        .map(|b| b.len())
        .unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    sqlx::query("UPDATE emergency_requests SET reason = $1 WHERE id = $2")
        .bind(REASON)
        .bind(req.id.to_string())
        .execute(db)
        .await
        .unwrap();
    assert_eq!(read_released(&c.doc2, req.id, rid).await.unwrap(), data);

    // A report committed after the request is not covered by it.
    let (later, _) = report(&c, "later.bin").await;
    let keys = c.doc2.c.emergency_keys(req.id).await.unwrap();
    assert_eq!(
        keys.keys.iter().map(|k| k.report_id).collect::<Vec<_>>(),
        vec![rid]
    );
    assert_eq!(
        code_of(&c.doc2.c.report(later).await.unwrap_err()),
        "not_found"
    );
    // The server stretches the request to the later report in its database: the entry's hash
    // of the report ids no longer matches, and the reader's client refuses.
    sqlx::query("INSERT INTO emergency_request_reports (request_id, report_id) VALUES ($1, $2)")
        .bind(req.id.to_string())
        .bind(later.to_string())
        .execute(db)
        .await
        .unwrap();
    let e = read_released(&c.doc2, req.id, later)
        .await
        .map(|b| b.len())
        .unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    sqlx::query("DELETE FROM emergency_request_reports WHERE report_id = $1")
        .bind(later.to_string())
        .execute(db)
        .await
        .unwrap();

    // Replaying the released request after its hour: refused, report unreadable again.
    let past = chrono::Utc::now().timestamp_millis() - 1000;
    sqlx::query("UPDATE emergency_requests SET until_at = $1 WHERE id = $2")
        .bind(past)
        .bind(req.id.to_string())
        .execute(db)
        .await
        .unwrap();
    let e = c.doc2.c.emergency_keys(req.id).await.unwrap_err();
    assert_eq!(code_of(&e), "invalid_status", "{e}");
    assert_eq!(
        code_of(&c.doc2.c.report(rid).await.unwrap_err()),
        "not_found"
    );

    // A removed member: a fresh request released, then the admin removes them.
    let req2 = c.doc2.c.emergency_open(c.pat.id, REASON).await.unwrap();
    assert_eq!(c.doc2.c.report(rid).await.unwrap().summary.id, rid);
    c.admin
        .c
        .emergency_team_change(c.doc2.id, false)
        .await
        .unwrap();
    assert!(escrowed_for(&c, rid).await.is_empty(), "escrow dropped");
    let e = c.doc2.c.emergency_keys(req2.id).await.unwrap_err();
    assert_eq!(code_of(&e), "not_on_team", "{e}");
    assert_eq!(
        code_of(&c.doc2.c.report(rid).await.unwrap_err()),
        "not_found"
    );
    let e = c.doc2.c.emergency_open(c.pat.id, REASON).await.unwrap_err();
    assert_eq!(code_of(&e), "not_on_team", "{e}");
    // The next upload wraps to nobody: the kind-11 removal is what the server's list now
    // reflects, and the database-only rows still get nothing.
    let (next, _) = report(&c, "next.bin").await;
    assert!(escrowed_for(&c, next).await.is_empty());

    // Escrow deposits: only the author, only for members.
    let e = c.doc2.c.emergency_escrow(rid, vec![]).await.unwrap_err();
    assert_eq!(code_of(&e), "not_found", "{e}");
    let e = c
        .doc
        .c
        .emergency_escrow(
            rid,
            vec![clinvault::api::emergency::EscrowWrap {
                member_id: c.doc2.id,
                wrapped: vec![0; clinvault::seal::WRAPPED_DEK_LEN],
            }],
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "conflict", "{e}");
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(attacks_on_break_glass, attacks);

/// The CLI with its own config and state folder (in `dir`) against `url`, the test password
/// in the environment: (exit code, stdout, stderr).
async fn cli(dir: &std::path::Path, url: &str, args: &[&str]) -> (i32, String, String) {
    common::cli(dir, url, args, &[("CLINVAULT_PASSWORD", common::PASSWORD)]).await
}

/// The commands end to end: the admin puts a doctor on the team, the doctor breaks the glass
/// and gets the file, the patient's `access` shows it in words with the reason, the admin
/// reviews it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_break_glass() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let url = c.ts.url.clone();
    let (admin, doc2, pat) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    for (d, email) in [
        (&admin, "admin@clinic.test"),
        (&doc2, "wilson@clinic.test"),
        (&pat, "pat@clinic.test"),
    ] {
        let (rc, out, err) = cli(d.path(), &url, &["login", "--email", email]).await;
        assert_eq!(rc, 0, "{out}{err}");
    }
    let id = c.doc2.id.to_string();
    let (rc, out, err) = cli(admin.path(), &url, &["admin", "emergency-team", "add", &id]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("is on the emergency team"), "{out}");
    let (rc, out, err) = cli(admin.path(), &url, &["admin", "emergency-team", "list"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains(&id) && out.contains('✓'), "{out}");
    let (rid, data) = report(&c, "ecg.bin").await;

    let er = doc2.path().join("er");
    std::fs::create_dir(&er).unwrap();
    let pid = c.pat.id.to_string();
    let args = ["emergency", "open", &pid, "--reason", REASON, "--out"];
    let (rc, out, err) = cli(
        doc2.path(),
        &url,
        &[&args[..], &[er.to_str().unwrap()]].concat(),
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("break-glass request"), "{out}");
    let saved = er.join(format!("{rid}-ecg.bin"));
    assert_eq!(std::fs::read(&saved).unwrap(), data, "{out}");

    let (rc, out, err) = cli(pat.path(), &url, &["access"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("BREAK-GLASS EMERGENCY ACCESS"))
        .unwrap_or_else(|| panic!("no break-glass line: {out}"));
    assert!(
        line.contains(REASON) && line.contains("James Wilson"),
        "{line}"
    );

    let (rc, out, err) = cli(admin.path(), &url, &["admin", "emergencies"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains(REASON) && out.contains("released"), "{out}");
    c.ts.handle.shutdown().await.unwrap();
}

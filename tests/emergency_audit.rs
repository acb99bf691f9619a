//! Issue 16: break-glass in the auditor's replay (docs/protocol.md §17.6). Every kind-12
//! access is listed; one whose reader the replayed team (kind 11) did not hold at that entry
//! is a problem, as is a team change not made by a ledger administrator. The bad entries are
//! appended with the server's own append key (test hook): what a rogue server or a database
//! administrator with the key could write, which only the replay can catch.

mod common;

use clinvault::client::audit::{Finding, audit};
use clinvault::ledger::{Entry, TeamChange, emergency_reports_hash};
use common::Db;
use common::clinic::{Clinic, clinic_with, report_bytes, upload_file, write_file};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const REASON: &str = "unconscious in the ER, needs last month's ECG";

fn access(patient: Uuid, reader: Uuid, time_ms: i64, release_ms: i64) -> Entry {
    Entry::EmergencyAccess {
        time_ms,
        request_id: Uuid::new_v4().into_bytes(),
        patient_id: patient.into_bytes(),
        reader_id: reader.into_bytes(),
        reports_hash: emergency_reports_hash(&[]),
        reason_hash: Sha256::digest(b"forged").into(),
        release_ms,
    }
}

async fn append(c: &Clinic, e: Entry, subjects: Vec<Uuid>) -> u64 {
    c.ts.handle
        .append_for_tests(&[(e, subjects)])
        .await
        .unwrap()[0]
}

async fn audit_findings(c: &Clinic) -> clinvault::client::audit::AuditSummary {
    let l = c.auditor.ledger().await.unwrap();
    audit(&c.auditor.c, &l, false).await.unwrap()
}

/// Findings about break-glass or the team only.
fn emergency_findings(s: &clinvault::client::audit::AuditSummary) -> Vec<Finding> {
    s.findings
        .iter()
        .filter(|f| {
            matches!(
                f,
                Finding::EmergencyNotOnTeam { .. }
                    | Finding::BadEmergency { .. }
                    | Finding::BadTeamChange { .. }
            )
        })
        .cloned()
        .collect()
}

async fn audited(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    c.admin
        .c
        .emergency_team_change(c.doc2.id, true)
        .await
        .unwrap();
    let data = report_bytes(20_000, b"ECG");
    let file = write_file(c.doc.state.path(), "ecg.bin", &data);
    upload_file(&c, &file, "ecg.bin").await;
    let req = c.doc2.c.emergency_open(c.pat.id, REASON).await.unwrap();

    // An honest break-glass is listed and is no problem; the auditor is not shown the
    // reason, so the listing carries its hash.
    let s = audit_findings(&c).await;
    assert!(s.clean(), "{:?}", s.findings);
    assert_eq!(s.emergencies.len(), 1);
    let e = &s.emergencies[0];
    assert_eq!(
        (e.index, e.request, e.patient, e.reader),
        (req.ledger_index, req.id, c.pat.id, c.doc2.id)
    );
    assert_eq!(e.reason_hash, <[u8; 32]>::from(Sha256::digest(REASON)));
    assert_eq!(e.reason, None);

    // A kind 12 for a doctor never on the team (the author, doc): flagged.
    let now = chrono::Utc::now().timestamp_millis();
    let forged = append(&c, access(c.pat.id, c.doc.id, now, now), vec![c.pat.id]).await;
    // A kind 11 adding doc made by doc2, no administrator: flagged, and changes nothing, so a
    // kind 12 by doc after it is still not on the team.
    let by_doctor = append(
        &c,
        Entry::EmergencyTeam {
            time_ms: now,
            member_id: c.doc.id.into_bytes(),
            change: TeamChange::Added,
            admin_id: c.doc2.id.into_bytes(),
        },
        vec![c.doc.id],
    )
    .await;
    let after_bad_add = append(&c, access(c.pat.id, c.doc.id, now, now), vec![c.pat.id]).await;
    // A kind 12 released before it was made, on a non-patient, by a member: flagged as such.
    let early = append(
        &c,
        access(c.doc.id, c.doc2.id, now, now - 1),
        vec![c.doc.id],
    )
    .await;
    // The administrator removes doc2 (the real route); a kind 12 by doc2 after that: flagged.
    let removed = c
        .admin
        .c
        .emergency_team_change(c.doc2.id, false)
        .await
        .unwrap()
        .ledger_index;
    let after_removal = append(&c, access(c.pat.id, c.doc2.id, now, now), vec![c.pat.id]).await;
    assert!(forged < by_doctor && by_doctor < after_bad_add && after_bad_add < early);
    assert!(early < removed && removed < after_removal);

    let s = audit_findings(&c).await;
    let not_on = |index: u64, who: Uuid| Finding::EmergencyNotOnTeam {
        index,
        reader: who.to_string(),
    };
    assert_eq!(
        emergency_findings(&s),
        vec![
            not_on(forged, c.doc.id),
            Finding::BadTeamChange {
                index: by_doctor,
                member: c.doc.id.to_string(),
                what: format!(
                    "made by {}, whom the ledger does not register as an administrator",
                    c.doc2.id
                ),
            },
            not_on(after_bad_add, c.doc.id),
            Finding::BadEmergency {
                index: early,
                what: "on an account the ledger does not register as a patient".into(),
            },
            Finding::BadEmergency {
                index: early,
                what: format!(
                    "whose release time ({}) is before the request ({now})",
                    now - 1
                ),
            },
            not_on(after_removal, c.doc2.id),
        ]
    );
    // Every kind 12 is listed, the honest one first.
    let listed: Vec<u64> = s.emergencies.iter().map(|e| e.index).collect();
    assert_eq!(
        listed,
        vec![
            req.ledger_index,
            forged,
            after_bad_add,
            early,
            after_removal
        ]
    );
    for f in &s.findings {
        println!("audit: PROBLEM  {f}");
    }
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(audit_lists_and_checks_break_glass, audited);

/// `clinvault audit` prints the access line and, for a kind 12 by a non-member, the problem
/// (exit code 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_audit_shows_break_glass() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    c.admin
        .c
        .emergency_team_change(c.doc2.id, true)
        .await
        .unwrap();
    let file = write_file(c.doc.state.path(), "ecg.bin", &report_bytes(9_000, b"E"));
    upload_file(&c, &file, "ecg.bin").await;
    let req = c.doc2.c.emergency_open(c.pat.id, REASON).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw = [("CLINVAULT_PASSWORD", common::PASSWORD)];
    let run = |args: &'static [&'static str]| common::cli(dir.path(), &c.ts.url, args, &pw);
    let (rc, out, err) = run(&["login", "--email", "audit@clinic.test"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = run(&["audit"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("BREAK-GLASS"))
        .unwrap_or_else(|| panic!("no break-glass line: {out}"));
    let hash = hex::encode(Sha256::digest(REASON));
    for want in [
        format!("ledger entry {}", req.ledger_index),
        req.id.to_string(),
        c.pat.id.to_string(),
        c.doc2.id.to_string(),
        format!("reason hash {hash}"),
    ] {
        assert!(line.contains(&want), "{want} not in {line}");
    }

    let now = chrono::Utc::now().timestamp_millis();
    let forged = append(&c, access(c.pat.id, c.doc.id, now, now), vec![c.pat.id]).await;
    let (rc, out, err) = run(&["audit"]).await;
    assert_eq!(rc, 1, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("BREAK-GLASS")).count(),
        2
    );
    assert!(
        out.contains(&format!(
            "PROBLEM  ledger entry {forged}: a BREAK-GLASS access by {}, who was not on the \
             emergency team",
            c.doc.id
        )),
        "{out}"
    );
    c.ts.handle.shutdown().await.unwrap();
}

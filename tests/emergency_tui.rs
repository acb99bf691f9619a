//! Issue 16: break-glass through the terminal client's `update`, every effect run for real
//! against an embedded server (SQLite; PostgreSQL when asked for): a team doctor breaks the
//! glass and reads the report in the viewer; a non-team doctor is refused in words; a patient
//! vetoes during the wait; an early release is caught by the reader's client. No sleeps: the
//! release time is moved in the database where the clock would have to run.

mod common;

use ratatui::crossterm::event::KeyCode;
use sha2::{Digest, Sha256};

use clinvault::tui::state::{App, Popup, Screen};
use common::clinic::{Clinic, clinic_with, upload_file, write_file};
use common::tui::{TZ, new_app, press, screen_text, typ};
use common::{Db, PASSWORD, TestServer};

const REASON: &str = "unconscious in the ER, needs last month's ECG";
const TEXT: &str = "# ECG\n\nRhythm: sinus, 72/min\nECG-MARKER-16U\n";

async fn logged_in(s: &TestServer, email: &str) -> App {
    let mut app = new_app(s);
    typ(&mut app, email).await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, PASSWORD).await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Main, "{:?}", app.login.message);
    // Off the Doctors pane, whose search could take the letters.
    press(&mut app, KeyCode::Char('6')).await;
    app
}

/// `B`, the patient, the reason, Enter (check), `y` (confirm).
async fn break_glass(app: &mut App, patient: &str, reason: &str) {
    press(app, KeyCode::Char('B')).await;
    assert!(
        matches!(app.popup, Some(Popup::BreakGlass(_))),
        "the form opens: {:?}",
        app.status.error
    );
    typ(app, patient).await;
    press(app, KeyCode::Tab).await;
    typ(app, reason).await;
    press(app, KeyCode::Enter).await;
    let Some(Popup::BreakGlass(b)) = &app.popup else {
        panic!("still the form")
    };
    assert!(b.confirming, "confirmation asked: {:?}", b.message);
    assert!(screen_text(app).contains("mailed at once to the patient"));
    press(app, KeyCode::Char('y')).await;
}

async fn team_and_report(c: &Clinic) -> uuid::Uuid {
    c.admin
        .c
        .emergency_team_change(c.doc2.id, true)
        .await
        .expect("admin adds the second doctor to the team");
    let dir = tempfile::tempdir().expect("dir");
    let f = write_file(dir.path(), "ecg.md", TEXT.as_bytes());
    upload_file(c, &f, "ECG").await.report_id
}

async fn invoke_and_read(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let rid = team_and_report(&c).await;

    // A doctor not on the team: the server's refusal, in words, in the form.
    let mut house = logged_in(&c.ts, &c.doc.email).await;
    break_glass(&mut house, &c.pat.id.to_string(), REASON).await;
    let Some(Popup::BreakGlass(b)) = &house.popup else {
        panic!("the form stays open with the refusal")
    };
    let m = b.message.clone().unwrap_or_default();
    assert!(m.contains("you are not on the emergency team"), "{m}");
    assert!(screen_text(&house).contains("not on the emergency team"));

    // The team member, by the patient's address (among their patients, as the CLI resolves).
    let admin_mails = c.ts.mails_to("admin@clinic.test");
    let pat_mails = c.ts.mails_to(&c.pat.email);
    let mut wilson = logged_in(&c.ts, &c.doc2.email).await;
    break_glass(&mut wilson, &c.pat.email, REASON).await;
    let Some(Popup::Emergencies(v)) = &wilson.popup else {
        panic!("the request is shown: {:?}", wilson.status.error)
    };
    assert_eq!(v.requests.len(), 1);
    assert_eq!(v.requests[0].status, "released");
    assert_eq!(v.requests[0].report_ids, vec![rid]);
    // Mailed at once to the patient and the administrators.
    assert_eq!(c.ts.mails_to(&c.pat.email), pat_mails + 1);
    assert_eq!(c.ts.mails_to("admin@clinic.test"), admin_mails + 1);
    let info = wilson.status.info.clone().unwrap_or_default();
    assert!(
        info.contains("Break-glass logged in the ledger (#"),
        "{info}"
    );

    // Enter on the report row: the kind-12 entry is checked, then the ordinary read.
    press(&mut wilson, KeyCode::Enter).await;
    let Some(Popup::Viewer(v)) = &wilson.popup else {
        panic!("the viewer opens: {:?}", wilson.status.error)
    };
    assert_eq!(v.report, rid);
    assert_eq!(v.len, TEXT.len() as u64);
    assert_eq!(v.sha256, hex::encode(Sha256::digest(TEXT.as_bytes())));
    assert!(screen_text(&wilson).contains("ECG-MARKER-16U"));
    press(&mut wilson, KeyCode::Esc).await;
    assert!(wilson.popup.is_none());

    // Later: `E` lists it again, still readable within its hour.
    press(&mut wilson, KeyCode::Char('E')).await;
    press(&mut wilson, KeyCode::Char('j')).await;
    press(&mut wilson, KeyCode::Enter).await;
    assert!(matches!(wilson.popup, Some(Popup::Viewer(_))));

    // The patient sees it, released: too late to veto.
    let mut pat = logged_in(&c.ts, &c.pat.email).await;
    press(&mut pat, KeyCode::Char('E')).await;
    let screen = screen_text(&pat);
    assert!(screen.contains("released: 1 report"), "{screen}");
    press(&mut pat, KeyCode::Char('v')).await;
    let Some(Popup::Emergencies(v)) = &pat.popup else {
        panic!("the list stays")
    };
    assert_eq!(v.confirm_veto, None);
    assert!(
        v.message
            .as_deref()
            .unwrap_or("")
            .contains("Only a waiting")
    );
}
both_backends!(invoke_from_the_tui_reads_the_report, invoke_and_read);

/// A too-short reason is caught by the form, nothing is sent; the patient cannot open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_form_checks_before_sending() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let mut wilson = logged_in(&c.ts, &c.doc2.email).await;
    press(&mut wilson, KeyCode::Char('B')).await;
    typ(&mut wilson, &c.pat.id.to_string()).await;
    press(&mut wilson, KeyCode::Tab).await;
    typ(&mut wilson, "ecg").await;
    press(&mut wilson, KeyCode::Enter).await;
    let Some(Popup::BreakGlass(b)) = &wilson.popup else {
        panic!("the form stays")
    };
    assert!(!b.confirming && !b.sending);
    assert!(
        b.message.as_deref().unwrap_or("").contains("too short"),
        "{:?}",
        b.message
    );
    // `q` is text here, not quit.
    typ(&mut wilson, " q").await;
    assert!(!wilson.quit);
    let Some(Popup::BreakGlass(b)) = &wilson.popup else {
        panic!("the form stays")
    };
    assert_eq!(b.message, None, "typing clears the complaint");
    let mut pat = logged_in(&c.ts, &c.pat.email).await;
    press(&mut pat, KeyCode::Char('B')).await;
    assert!(pat.popup.is_none());
    assert!(
        pat.status
            .error
            .as_deref()
            .unwrap_or("")
            .contains("emergency team")
    );
}

async fn wait_veto(db: Db) {
    let c = clinic_with(db, |cfg| cfg.server.emergency_wait_minutes = 10).await;
    let rid = team_and_report(&c).await;
    let mut wilson = logged_in(&c.ts, &c.doc2.email).await;
    break_glass(&mut wilson, &c.pat.id.to_string(), REASON).await;
    let Some(Popup::Emergencies(v)) = &wilson.popup else {
        panic!("the request is shown: {:?}", wilson.status.error)
    };
    let req = v.requests[0].clone();
    assert_eq!(req.status, "waiting");
    let hhmm = req
        .release_at
        .with_timezone(&TZ)
        .format("%H:%M")
        .to_string();
    let want = format!("released at {hhmm} unless the patient vetoes");
    let screen = screen_text(&wilson);
    assert!(screen.contains(&want), "{screen}");
    // No report row while it waits; Enter asks again: still waiting.
    assert_eq!(v.rows(true).len(), 1);
    press(&mut wilson, KeyCode::Enter).await;
    assert!(matches!(wilson.popup, Some(Popup::Emergencies(_))));

    // The patient: the pending request, `v`, a confirmation, `y`.
    let mut pat = logged_in(&c.ts, &c.pat.email).await;
    press(&mut pat, KeyCode::Char('E')).await;
    let screen = screen_text(&pat);
    assert!(screen.contains(&want), "{screen}");
    assert!(screen.contains(REASON), "{screen}");
    press(&mut pat, KeyCode::Char('v')).await;
    assert!(screen_text(&pat).contains("Veto this request?"));
    press(&mut pat, KeyCode::Char('y')).await;
    let Some(Popup::Emergencies(v)) = &pat.popup else {
        panic!("the list stays")
    };
    assert_eq!(v.requests[0].status, "vetoed");
    let screen = screen_text(&pat);
    assert!(screen.contains("vetoed by the patient"), "{screen}");

    // The wait runs out (moved in the database): the doctor still gets nothing.
    let past = chrono::Utc::now().timestamp_millis() - 1000;
    sqlx::query("UPDATE emergency_requests SET release_at = $1 WHERE id = $2")
        .bind(past)
        .bind(req.id.to_string())
        .execute(c.ts.handle.db())
        .await
        .expect("move the release time");
    press(&mut wilson, KeyCode::Char('r')).await;
    let Some(Popup::Emergencies(v)) = &wilson.popup else {
        panic!("the list stays")
    };
    assert_eq!(v.requests[0].status, "vetoed");
    assert_eq!(v.rows(true).len(), 1, "no report to read");

    // A second request, released early by an operator in the database: the server serves
    // its keys, the reader's client compares with the release time in the ledger entry.
    press(&mut wilson, KeyCode::Esc).await;
    break_glass(&mut wilson, &c.pat.id.to_string(), REASON).await;
    let Some(Popup::Emergencies(v)) = &wilson.popup else {
        panic!("the request is shown: {:?}", wilson.status.error)
    };
    let req2 = v.requests[0].id;
    sqlx::query("UPDATE emergency_requests SET release_at = $1 WHERE id = $2")
        .bind(past)
        .bind(req2.to_string())
        .execute(c.ts.handle.db())
        .await
        .expect("move the release time");
    press(&mut wilson, KeyCode::Char('r')).await;
    let Some(Popup::Emergencies(v)) = &wilson.popup else {
        panic!("the list stays")
    };
    let at = v
        .rows(true)
        .iter()
        .position(|r| r.report == Some(rid))
        .expect("the server shows it released");
    while wilson_selected(&wilson) != at {
        press(&mut wilson, KeyCode::Char('j')).await;
    }
    press(&mut wilson, KeyCode::Enter).await;
    assert!(
        !matches!(wilson.popup, Some(Popup::Viewer(_))),
        "no viewer for an early release"
    );
    let failed = wilson.ledger.failed.clone().unwrap_or_default();
    assert!(
        failed.contains("before the time its ledger entry records"),
        "{failed}"
    );
}
both_backends!(veto_during_the_wait, wait_veto);

fn wilson_selected(app: &App) -> usize {
    match &app.popup {
        Some(Popup::Emergencies(v)) => v.selected,
        _ => usize::MAX,
    }
}

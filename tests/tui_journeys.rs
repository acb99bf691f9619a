//! Whole journeys through the terminal client's `update`, with every effect run for real
//! against an embedded server over loopback (no mocks): keys in, actions back, state checked.

mod common;

use chrono::{Duration, Timelike};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use clinvault::api::{Availability, BookingStatus, Role, WeeklyBlock};
use clinvault::tui::action::{Action, Effect};
use clinvault::tui::keymap::KeyMap;
use clinvault::tui::state::{App, Check, Clock, DayRow, Pane, Popup, Screen, ServerInfo};
use clinvault::tui::tasks::perform;
use clinvault::tui::theme::Theme;
use clinvault::tui::update::update;
use common::tui::{TZ, drive, log_in, new_app, press, screen_text, typ};
use common::{Db, PASSWORD, TEST_KDF, TestServer};

/// A clinic: a cardiologist and a dermatologist open every day 09:00–12:00 in 30-minute
/// slots, a reception desk and a patient.
async fn clinic() -> (TestServer, uuid::Uuid) {
    let s = common::start_server(Db::Sqlite).await;
    let admin = s.admin().await;
    let (_, dana) = s
        .staff(
            &admin,
            Role::Doctor,
            "dana@clinic.test",
            "Dana Herz",
            "Cardiology",
        )
        .await;
    let (_, mira) = s
        .staff(
            &admin,
            Role::Doctor,
            "mira@clinic.test",
            "Mira Haut",
            "Dermatology",
        )
        .await;
    s.staff(&admin, Role::Reception, "desk@clinic.test", "Rita Desk", "")
        .await;
    let every_day = Availability {
        weekly: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| WeeklyBlock {
                weekday: d.to_string(),
                start: "09:00".into(),
                end: "12:00".into(),
                slot_minutes: 30,
            })
            .collect(),
        days_off: vec![],
    };
    admin
        .set_availability(dana, &every_day)
        .await
        .expect("availability");
    admin
        .set_availability(mira, &every_day)
        .await
        .expect("availability");
    s.patient("pat@example.test", "Pat Ient").await;
    (s, dana)
}

/// Patient: search "cardio", open the calendar, book tomorrow 10:00, see it in Bookings.
async fn patient_books_tomorrow(s: &TestServer) -> App {
    let mut app = new_app(s);
    log_in(&mut app, "pat@example.test").await;
    assert_eq!(app.pane, Pane::Doctors);
    assert_eq!(app.doctors.rows.len(), 2, "every doctor before a search");

    press(&mut app, KeyCode::Char('/')).await;
    assert!(app.text_focus(), "the search field has the keys");
    typ(&mut app, "cardio").await;
    press(&mut app, KeyCode::Esc).await;
    let names: Vec<_> = app
        .doctors
        .rows
        .iter()
        .map(|r| r.doctor.name.as_str())
        .collect();
    assert_eq!(names, ["Dana Herz"], "specialty search");
    assert!(
        app.doctors.rows[0].next_free.is_some(),
        "next free slot shown"
    );

    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.pane, Pane::Calendar);
    let tomorrow = Clock::system(TZ).today + Duration::days(1);
    let mut guard = 0;
    while app.calendar.selected != Some(tomorrow) {
        let before = app.calendar.selected.expect("a day is selected");
        press(
            &mut app,
            if before < tomorrow {
                KeyCode::Char('l')
            } else {
                KeyCode::Char('h')
            },
        )
        .await;
        guard += 1;
        assert!(guard < 40, "reached tomorrow");
    }
    assert!(app.calendar.data.is_some(), "the month loaded");
    press(&mut app, KeyCode::Enter).await;
    assert!(app.calendar.in_day);
    let idx = app
        .day_rows()
        .iter()
        .position(|r| matches!(r, DayRow::Free(s) if s.start.with_timezone(&TZ).hour() == 10 && s.start.with_timezone(&TZ).minute() == 0))
        .expect("10:00 is free tomorrow");
    for _ in 0..idx {
        press(&mut app, KeyCode::Char('j')).await;
    }
    press(&mut app, KeyCode::Enter).await;
    assert!(
        matches!(app.popup, Some(Popup::Confirm(_))),
        "every change is confirmed"
    );
    press(&mut app, KeyCode::Esc).await;
    assert!(app.popup.is_none(), "Esc closes without booking");
    assert!(app.bookings.items.is_empty(), "Esc booked nothing");
    press(&mut app, KeyCode::Enter).await;
    press(&mut app, KeyCode::Char('y')).await;
    assert!(app.status.error.is_none(), "{:?}", app.status.error);

    press(&mut app, KeyCode::Char('3')).await;
    assert_eq!(app.pane, Pane::Bookings);
    let b = &app.bookings.items;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].doctor_name, "Dana Herz");
    assert_eq!(b[0].status, BookingStatus::Booked);
    let local = b[0].start.with_timezone(&TZ);
    assert_eq!(
        (local.date_naive(), local.hour(), local.minute()),
        (tomorrow, 10, 0)
    );
    assert_eq!(app.status.busy, 0, "nothing left in flight");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_books_then_reception_checks_in_and_doctor_completes() {
    let (s, dana) = clinic().await;
    let patient = patient_books_tomorrow(&s).await;
    let booking = patient.bookings.items[0].clone();
    // Checked in on its day, completed once begun: the visit has just begun.
    common::backdate_booking(s.handle.db(), booking.id).await;

    // A doctor cannot complete a visit that was not checked in: the UI says so, no request.
    let mut doc = new_app(&s);
    log_in(&mut doc, "dana@clinic.test").await;
    assert_eq!(
        doc.pane,
        Pane::Calendar,
        "a doctor starts on their own calendar"
    );
    assert_eq!(doc.calendar.doctor.as_ref().map(|d| d.id), Some(dana));
    press(&mut doc, KeyCode::Char('3')).await;
    press(&mut doc, KeyCode::Char('d')).await;
    assert!(doc.popup.is_none());
    assert!(
        doc.status.error.as_deref().unwrap_or("").contains("booked"),
        "{:?}",
        doc.status.error
    );

    let mut desk = new_app(&s);
    log_in(&mut desk, "desk@clinic.test").await;
    press(&mut desk, KeyCode::Char('3')).await;
    let i = desk
        .bookings
        .items
        .iter()
        .position(|b| b.id == booking.id)
        .expect("reception sees it");
    for _ in 0..i {
        press(&mut desk, KeyCode::Char('j')).await;
    }
    press(&mut desk, KeyCode::Char('i')).await;
    press(&mut desk, KeyCode::Char('y')).await;
    assert_eq!(
        desk.bookings.items[i].status,
        BookingStatus::CheckedIn,
        "{:?}",
        desk.status.error
    );

    press(&mut doc, KeyCode::Char('r')).await;
    press(&mut doc, KeyCode::Char('d')).await;
    assert!(matches!(doc.popup, Some(Popup::Confirm(_))));
    press(&mut doc, KeyCode::Char('y')).await;
    assert!(doc.status.error.is_none(), "{:?}", doc.status.error);
    let done = s
        .login("dana@clinic.test")
        .await
        .booking(booking.id)
        .await
        .expect("booking");
    assert_eq!(
        done.status,
        BookingStatus::Completed,
        "the server has it completed"
    );
    assert_eq!(
        doc.bookings.items[0].status,
        BookingStatus::Completed,
        "and the pane shows it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reception_books_for_a_chosen_patient() {
    let (s, _) = clinic().await;
    let mut desk = new_app(&s);
    log_in(&mut desk, "desk@clinic.test").await;
    press(&mut desk, KeyCode::Enter).await; // first doctor's calendar
    press(&mut desk, KeyCode::Enter).await; // into the day
    press(&mut desk, KeyCode::Enter).await; // book the first free slot
    let Some(Popup::PickPatient(p)) = &desk.popup else {
        panic!("a patient is chosen first")
    };
    assert_eq!(p.results.len(), 1, "patients listed at once");
    typ(&mut desk, "pat").await;
    press(&mut desk, KeyCode::Enter).await;
    assert!(matches!(desk.popup, Some(Popup::Confirm(_))));
    press(&mut desk, KeyCode::Char('y')).await;
    assert!(desk.status.error.is_none(), "{:?}", desk.status.error);
    assert_eq!(desk.bookings.items.len(), 1);
    assert_eq!(desk.bookings.items[0].patient_name, "Pat Ient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_lock_wipes_keys_and_private_text() {
    let (s, _) = clinic().await;
    let mut app = patient_books_tomorrow(&s).await;
    assert!(app.session.as_ref().is_some_and(|x| x.keys.is_some()));
    let before = screen_text(&app);
    assert!(
        before.contains("Dana Herz"),
        "private text on screen before the lock"
    );

    drive(&mut app, Action::IdleLock).await;
    assert!(app.session.is_none(), "keys and token gone");
    assert!(app.bookings.items.is_empty() && app.doctors.rows.is_empty());
    assert!(app.calendar.data.is_none() && app.calendar.doctor.is_none());
    assert!(app.popup.is_none() && app.status.info.is_none());
    assert_eq!(app.screen, Screen::Login);
    assert_eq!(app.login.locked.as_deref(), Some("pat@example.test"));
    assert!(app.login.password.is_empty());
    app.server.url = "http://clinic.test".into();
    let after = screen_text(&app);
    for private in ["Dana Herz", "Pat Ient", "Cardiology", "booked", "10:00"] {
        assert!(
            !after.contains(private),
            "{private:?} still on screen:\n{after}"
        );
    }
    insta::assert_snapshot!("locked_after_journey", after);

    // Unlock: the password again, the same account, a fresh session.
    typ(&mut app, PASSWORD).await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Main);
    assert_eq!(
        app.session.as_ref().map(|x| x.user.email.as_str()),
        Some("pat@example.test")
    );
    assert_eq!(app.bookings.items.len(), 1, "data reloads after unlock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_server_show_errors_not_crashes() {
    let s = common::start_server(Db::Sqlite).await;
    s.patient("pat@example.test", "Pat Ient").await;
    let mut app = new_app(&s);
    typ(&mut app, "pat@example.test").await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, "not the password at all, sorry").await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Login);
    assert!(app.login.message.is_some());
    assert!(
        app.login.password.is_empty(),
        "a failed password is not kept"
    );

    // A server that went away: the answer is an error in the UI.
    let url = s.url.clone();
    s.handle.shutdown().await.expect("shutdown");
    let mut app = App::new(
        Clock::system(TZ),
        Theme::mono(),
        KeyMap::default(),
        ServerInfo {
            url: url.clone(),
            ..Default::default()
        },
    );
    app.client_template =
        Some(clinvault::client::ApiClient::new(&url, false, TEST_KDF).expect("client"));
    typ(&mut app, "pat@example.test").await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, PASSWORD).await;
    press(&mut app, KeyCode::Enter).await;
    assert!(
        app.login.message.as_deref().unwrap_or("").contains("reach"),
        "{:?}",
        app.login.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_by_the_server_locks_the_client() {
    let s = common::start_server(Db::Sqlite).await;
    s.patient("pat@example.test", "Pat Ient").await;
    let mut app = new_app(&s);
    log_in(&mut app, "pat@example.test").await;
    let token = app
        .session
        .as_ref()
        .and_then(|x| x.client.token())
        .expect("token")
        .to_string();
    s.client()
        .with_token(token)
        .logout()
        .await
        .expect("the session ends elsewhere");

    press(&mut app, KeyCode::Char('3')).await;
    press(&mut app, KeyCode::Char('r')).await;
    assert!(app.session.is_none(), "keys dropped");
    assert_eq!(app.screen, Screen::Login);
    assert_eq!(app.login.locked.as_deref(), Some("pat@example.test"));
    assert!(
        app.login
            .message
            .as_deref()
            .unwrap_or("")
            .contains("ended the session")
    );
    assert_eq!(app.status.busy, 0);
}

fn replica(s: &TestServer, bucket: &str, chunk: &str) -> std::path::PathBuf {
    s.dir
        .path()
        .join("buckets")
        .join(bucket)
        .join("chunks")
        .join(&chunk[..2])
        .join(&chunk[2..4])
        .join(chunk)
}

/// Doctor uploads a report for the patient with a completed visit; the patient enters the
/// mailed code in the OTP pane, downloads it (byte for byte) and verifies it; a chunk flipped
/// in both replicas turns the row red; the idle lock leaves no title in state or on screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_upload_release_download_verify_tamper_and_lock() {
    let c = common::clinic::clinic_with(Db::Sqlite, |_| {}).await;
    let s = &c.ts;
    let dir = tempfile::tempdir().expect("dir");
    let body = common::clinic::report_bytes(300_000, b"CLINVAULT-TUI-MARKER");
    let file = common::clinic::write_file(dir.path(), "blood-panel.txt", &body);

    let mut doc = new_app(s);
    log_in(&mut doc, "house@clinic.test").await;
    press(&mut doc, KeyCode::Char('4')).await;
    assert_eq!(doc.pane, Pane::Reports);
    assert!(doc.reports.rows.is_empty(), "{:?}", doc.reports.error);
    assert!(doc.ledger.head.is_some(), "the ledger synced and verified");
    press(&mut doc, KeyCode::Char('u')).await;
    let Some(Popup::PickUploadPatient(p)) = &doc.popup else {
        panic!("a patient is chosen first: {:?}", doc.status.error)
    };
    let names: Vec<_> = p.items.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["Patricia Patient"], "the doctor's own patients");
    press(&mut doc, KeyCode::Enter).await;
    assert!(matches!(doc.popup, Some(Popup::Path(_))));
    drive(&mut doc, Action::Paste(file.display().to_string())).await;
    // #14 point 13: then the title, the file name without its extension offered.
    press(&mut doc, KeyCode::Enter).await;
    let Some(Popup::Path(t)) = &doc.popup else {
        panic!("the title is asked: {:?}", doc.status.error)
    };
    assert_eq!(clinvault::tui::state::field_text(&t.input), "blood-panel");
    // Stopped first: Esc asks, y stops it before a chunk goes out.
    let fx = update(
        &mut doc,
        Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    assert!(doc.transfer.is_some() && doc.popup.is_none());
    press(&mut doc, KeyCode::Esc).await;
    assert!(
        matches!(doc.popup, Some(Popup::Confirm(_))),
        "Esc asks before stopping"
    );
    press(&mut doc, KeyCode::Char('y')).await;
    for e in fx {
        if let Some(a) = perform(e).await {
            drive(&mut doc, a).await;
        }
    }
    assert!(doc.transfer.is_none());
    assert!(
        doc.status
            .info
            .as_deref()
            .unwrap_or("")
            .contains("Upload of blood-panel.txt stopped"),
        "{:?} {:?}",
        doc.status.info,
        doc.status.error
    );
    press(&mut doc, KeyCode::Char('r')).await;
    assert_eq!(doc.reports.rows.len(), 1, "{:?}", doc.reports.error);
    let open = doc.reports.rows[0].summary.clone();
    assert_eq!(open.status, "open", "opened, not committed");
    let screen = screen_text(&doc);
    assert!(screen.contains("incomplete"), "{screen}");
    assert!(
        screen.contains("blood-panel.t") && screen.contains("upload of blood-panel.txt stopped"),
        "a stopped upload shows its file name (#14 point 13): {screen}"
    );
    // The same file again: it resumes and completes.
    press(&mut doc, KeyCode::Char('u')).await;
    press(&mut doc, KeyCode::Enter).await;
    drive(&mut doc, Action::Paste(file.display().to_string())).await;
    press(&mut doc, KeyCode::Enter).await;
    press(&mut doc, KeyCode::Enter).await;
    assert!(doc.transfer.is_none(), "the upload finished");
    assert!(doc.status.error.is_none(), "{:?}", doc.status.error);
    assert!(
        doc.status
            .info
            .as_deref()
            .unwrap_or("")
            .contains("Uploaded"),
        "{:?}",
        doc.status.info
    );
    assert_eq!(doc.reports.rows.len(), 1);
    assert_eq!(
        doc.reports.rows[0].summary.id, open.id,
        "the same report, resumed"
    );
    assert_eq!(doc.reports.rows[0].summary.status, "awaiting_release");
    assert_eq!(
        doc.reports.rows[0].check.title(),
        Some("blood-panel"),
        "the author reads the title it sealed"
    );

    let mut pat = new_app(s);
    log_in(&mut pat, "pat@clinic.test").await;
    press(&mut pat, KeyCode::Char('4')).await;
    assert_eq!(pat.reports.rows.len(), 1);
    assert_eq!(
        pat.reports.rows[0].check,
        Check::Unchecked,
        "no key before the code"
    );
    let screen = screen_text(&pat);
    assert!(screen.contains("awaiting code"), "{screen}");
    press(&mut pat, KeyCode::Char('s')).await;
    assert!(
        pat.popup.is_none() && pat.status.error.is_some(),
        "nothing to save yet"
    );

    press(&mut pat, KeyCode::Char('5')).await;
    assert_eq!(pat.pane, Pane::Otp);
    assert_eq!(pat.otp.items.len(), 1, "{:?}", pat.otp.error);
    assert!(pat.otp.items[0].tries_left > 0);
    let code = common::six_digits(&s.last_mail("pat@clinic.test"));
    press(&mut pat, KeyCode::Enter).await;
    assert!(pat.text_focus(), "the code field has the keys");
    typ(&mut pat, "x12").await;
    assert_eq!(
        clinvault::tui::state::field_text(&pat.otp.code),
        "12",
        "digits only"
    );
    for _ in 0..2 {
        press(&mut pat, KeyCode::Backspace).await;
    }
    typ(&mut pat, &code).await;
    press(&mut pat, KeyCode::Enter).await;
    assert!(pat.status.error.is_none(), "{:?}", pat.status.error);
    assert!(pat.otp.items.is_empty(), "the code is used");
    let row = &pat.reports.rows[0];
    assert_eq!(row.summary.status, "released");
    assert_eq!(
        row.check.title(),
        Some("blood-panel"),
        "title decrypted here"
    );

    press(&mut pat, KeyCode::Char('4')).await;
    press(&mut pat, KeyCode::Char('s')).await;
    let Some(Popup::Path(p)) = &pat.popup else {
        panic!("a path is asked: {:?}", pat.status.error)
    };
    let out = std::path::PathBuf::from(clinvault::tui::state::field_text(&p.input));
    assert_eq!(
        out,
        pat.report_settings.download_dir.join("blood-panel.txt"),
        "the title, with the file's extension from its metadata (#14 point 13)"
    );
    press(&mut pat, KeyCode::Enter).await;
    assert!(pat.transfer.is_none());
    assert!(pat.status.error.is_none(), "{:?}", pat.status.error);
    assert_eq!(
        std::fs::read(&out).expect("downloaded"),
        body,
        "byte-identical"
    );
    assert!(matches!(pat.reports.rows[0].check, Check::Verified { .. }));
    // Saving again over it is refused: nothing is overwritten.
    press(&mut pat, KeyCode::Char('s')).await;
    press(&mut pat, KeyCode::Enter).await;
    assert!(matches!(pat.popup, Some(Popup::Path(_))));
    assert!(pat.status.error.as_deref().unwrap_or("").contains("exists"));
    press(&mut pat, KeyCode::Esc).await;
    assert!(pat.popup.is_none());

    press(&mut pat, KeyCode::Char('v')).await;
    assert!(
        matches!(pat.reports.rows[0].check, Check::Verified { .. }),
        "{:?}",
        pat.status.error
    );

    // Another doctor asks consent: lists the patient's reports, asks, enters the code the
    // patient was mailed; the author confirms the key wrap after seeing the fingerprint.
    let mut wil = new_app(s);
    log_in(&mut wil, "wilson@clinic.test").await;
    press(&mut wil, KeyCode::Char('4')).await;
    assert!(wil.reports.rows.is_empty(), "nothing of his own");
    press(&mut wil, KeyCode::Char('f')).await;
    assert!(matches!(wil.popup, Some(Popup::PickUploadPatient(_))));
    press(&mut wil, KeyCode::Enter).await;
    assert_eq!(wil.reports.rows.len(), 1, "{:?}", wil.reports.error);
    assert!(!wil.reports.rows[0].summary.readable);
    assert_eq!(
        wil.reports.rows[0].check,
        Check::Unchecked,
        "no title without a key"
    );
    press(&mut wil, KeyCode::Char('a')).await;
    assert!(matches!(wil.popup, Some(Popup::Confirm(_))));
    press(&mut wil, KeyCode::Char('y')).await;
    assert!(wil.status.error.is_none(), "{:?}", wil.status.error);
    assert!(
        screen_text(&wil).contains("consent requested"),
        "the row says the consent was asked (#14 point 6)"
    );
    // #14 point 14: Esc returns to the full list, `f` goes back to the patient.
    assert!(screen_text(&wil).contains("Esc: all"));
    press(&mut wil, KeyCode::Esc).await;
    assert!(wil.reports.patient.is_none() && wil.reports.rows.is_empty());
    press(&mut wil, KeyCode::Char('f')).await;
    press(&mut wil, KeyCode::Enter).await;
    assert!(wil.reports.patient.is_some());
    press(&mut wil, KeyCode::Char('5')).await;
    assert_eq!(wil.otp.items.len(), 1, "the grant's code waits for him");
    let code = common::six_digits(&s.last_mail("pat@clinic.test"));
    press(&mut wil, KeyCode::Char('e')).await;
    typ(&mut wil, &code).await;
    press(&mut wil, KeyCode::Enter).await;
    assert!(wil.status.error.is_none(), "{:?}", wil.status.error);

    press(&mut doc, KeyCode::Char('g')).await;
    let Some(Popup::Grants(g)) = &doc.popup else {
        panic!("grants listed: {:?}", doc.status.error)
    };
    assert_eq!(g.items.len(), 1);
    assert_eq!(g.items[0].status, "approved");
    press(&mut doc, KeyCode::Enter).await;
    let Some(Popup::Wrap(w)) = &doc.popup else {
        panic!("the wrap is confirmed first: {:?}", doc.status.error)
    };
    assert_eq!(w.reader_name, "James Wilson");
    assert!(!w.reader_fingerprint.is_empty());
    let screen = screen_text(&doc);
    assert!(screen.contains(&w.reader_fingerprint), "{screen}");
    press(&mut doc, KeyCode::Char('y')).await;
    assert!(doc.status.error.is_none(), "{:?}", doc.status.error);

    press(&mut wil, KeyCode::Char('4')).await;
    assert!(
        wil.reports.patient.is_none(),
        "leaving Reports ended the one-patient view (#14 point 14)"
    );
    assert_eq!(wil.reports.rows.len(), 1, "granted: in his own list");
    assert_eq!(wil.reports.rows[0].check.title(), Some("blood-panel"));
    press(&mut wil, KeyCode::Char('v')).await;
    assert!(matches!(wil.reports.rows[0].check, Check::Verified { .. }));

    // The patient revokes it, and is told a downloaded copy stays.
    press(&mut pat, KeyCode::Char('g')).await;
    let Some(Popup::Grants(g)) = &pat.popup else {
        panic!("grants listed")
    };
    assert_eq!(g.items[0].status, "wrapped");
    press(&mut pat, KeyCode::Char('x')).await;
    assert!(matches!(pat.popup, Some(Popup::Confirm(_))));
    assert!(screen_text(&pat).contains("cannot be recalled"));
    press(&mut pat, KeyCode::Char('y')).await;
    assert!(
        pat.status
            .info
            .as_deref()
            .unwrap_or("")
            .contains("cannot be recalled"),
        "{:?} {:?}",
        pat.status.info,
        pat.status.error
    );
    press(&mut wil, KeyCode::Char('r')).await;
    assert!(wil.reports.rows.is_empty(), "revoked: gone from his list");

    // Tamper: one chunk flipped in both replicas.
    let id = pat.reports.rows[0].summary.id;
    let detail = c.pat.c.report(id).await.expect("detail");
    let chunk = &detail.chunk_ids[0];
    for b in ["a", "b"] {
        let p = replica(s, b, chunk);
        let mut bytes = std::fs::read(&p).expect("replica");
        bytes[40] ^= 1;
        std::fs::write(&p, bytes).expect("write");
    }
    press(&mut pat, KeyCode::Char('v')).await;
    let Check::Failed(why) = &pat.reports.rows[0].check else {
        panic!("the row is red: {:?}", pat.reports.rows[0].check)
    };
    assert!(why.contains("chunk"), "{why}");
    assert!(
        pat.ledger.failed.is_none(),
        "a bad chunk is not a ledger failure"
    );
    let screen = screen_text(&pat);
    assert!(screen.contains("FAILED ✗"), "{screen}");
    assert_eq!(pat.status.busy, 0, "nothing left in flight");

    // The idle lock: no title in state or on screen.
    press(&mut pat, KeyCode::Char('6')).await;
    assert!(pat.ledger.head.is_some());
    // #14 point 14: words, not enum names.
    let texts: Vec<&str> = pat.ledger.entries.iter().map(|l| l.text.as_str()).collect();
    assert!(
        texts.iter().any(|t| t.contains("released by code")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("key served")), "{texts:?}");
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("ReleasedByOtp") || t.contains("KeyServed")),
        "{texts:?}"
    );
    drive(&mut pat, Action::IdleLock).await;
    assert!(pat.session.is_none());
    assert!(pat.reports.rows.is_empty() && pat.ledger.entries.is_empty());
    assert!(pat.otp.items.is_empty() && pat.transfer.is_none());
    pat.server.url = "http://clinic.test".into();
    let after = screen_text(&pat);
    assert!(!after.contains("blood-panel"), "{after}");
}

// ---- Issue 14: a newcomer and a busy reception desk ----

async fn ctrl(app: &mut App, c: char) {
    drive(
        app,
        Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
    )
    .await;
}

/// Reception with one booking of Pat's for tomorrow.
async fn desk_with_a_booking(s: &TestServer) -> App {
    let _ = patient_books_tomorrow(s).await;
    let mut desk = new_app(s);
    log_in(&mut desk, "desk@clinic.test").await;
    press(&mut desk, KeyCode::Char('3')).await;
    assert_eq!(desk.bookings.items.len(), 1);
    desk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_1_keys_do_nothing_while_the_terminal_is_too_small() {
    let (s, _) = clinic().await;
    let mut desk = desk_with_a_booking(&s).await;
    desk.too_small = true; // what a resize to 60×20 sets
    press(&mut desk, KeyCode::Char('c')).await;
    press(&mut desk, KeyCode::Char('y')).await;
    assert!(desk.popup.is_none(), "no invisible popup");
    assert_eq!(desk.bookings.items[0].status, BookingStatus::Booked);
    press(&mut desk, KeyCode::Char('1')).await;
    assert_eq!(desk.pane, Pane::Bookings, "not even a pane change");
    desk.too_small = false;
    press(&mut desk, KeyCode::Char('c')).await;
    assert!(
        matches!(desk.popup, Some(Popup::Confirm(_))),
        "works again once it fits"
    );
    press(&mut desk, KeyCode::Esc).await;
    desk.too_small = true;
    press(&mut desk, KeyCode::Char('q')).await;
    assert!(desk.quit, "q still quits when nothing runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_2_palette_enter_never_quits() {
    let (s, _) = clinic().await;
    let mut app = new_app(&s);
    log_in(&mut app, "pat@example.test").await;
    press(&mut app, KeyCode::Char(':')).await;
    press(&mut app, KeyCode::Enter).await;
    assert!(!app.quit, "`:` Enter does not quit");
    assert!(app.session.is_some(), "nor log out");
    // Typed by name, quit asks while work runs, like `q`.
    app.status.busy = 1;
    press(&mut app, KeyCode::Char(':')).await;
    typ(&mut app, "quit").await;
    press(&mut app, KeyCode::Enter).await;
    assert!(!app.quit);
    assert!(matches!(app.popup, Some(Popup::ConfirmQuit)));
    press(&mut app, KeyCode::Char('y')).await;
    assert!(app.quit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_3_help_closes_back_to_where_it_was_opened() {
    let (s, _) = clinic().await;
    let mut app = new_app(&s);
    log_in(&mut app, "pat@example.test").await;
    press(&mut app, KeyCode::Char('3')).await;
    for close in [
        KeyCode::Esc,
        KeyCode::Enter,
        KeyCode::Char('?'),
        KeyCode::Char('q'),
        KeyCode::Tab,
    ] {
        press(&mut app, KeyCode::Char('?')).await;
        assert_eq!(app.pane, Pane::Help);
        press(&mut app, close).await;
        assert_eq!(app.pane, Pane::Bookings, "{close:?} goes back");
        assert!(!app.quit, "{close:?} does not quit");
    }
    press(&mut app, KeyCode::Char('?')).await;
    assert!(screen_text(&app).contains("Esc back"), "the hint says so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_4_login_during_demo_seeding_waits_then_logs_in() {
    let (s, _) = clinic().await;
    let mut app = new_app(&s);
    app.server.demo = true;
    app.seed = Some(clinvault::tui::state::SeedProgress {
        done: 4,
        total: 21,
        ..Default::default()
    });
    typ(&mut app, "pat@example.test").await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, PASSWORD).await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Login);
    let msg = app.login.message.clone().unwrap_or_default();
    assert!(msg.contains("still being prepared (4/21)"), "{msg}");
    assert!(!msg.contains("wrong"), "{msg}");
    assert_eq!(app.status.busy, 0, "no login request sent");
    drive(
        &mut app,
        Action::Seed(clinvault::tui::state::SeedProgress {
            done: 21,
            total: 21,
            finished: true,
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(app.screen, Screen::Main, "logged in when ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_6_no_silent_no_ops() {
    let (s, _) = clinic().await;
    let mut desk = desk_with_a_booking(&s).await;
    // Cancel it, then `c` again: refused here, with a message, no request, no popup.
    press(&mut desk, KeyCode::Char('c')).await;
    press(&mut desk, KeyCode::Char('y')).await;
    assert_eq!(desk.bookings.items[0].status, BookingStatus::Cancelled);
    press(&mut desk, KeyCode::Char('c')).await;
    assert!(desk.popup.is_none());
    assert_eq!(desk.status.busy, 0, "no request sent");
    let e = desk.status.error.clone().unwrap_or_default();
    assert!(e.contains("cancelled"), "{e}");

    // Reception resends a patient's code by the request id from the mail.
    press(&mut desk, KeyCode::Esc).await;
    press(&mut desk, KeyCode::Char('R')).await;
    assert!(
        matches!(desk.popup, Some(Popup::Path(_))),
        "a prompt, not nothing"
    );
    typ(&mut desk, "not an id").await;
    press(&mut desk, KeyCode::Enter).await;
    assert!(
        desk.status
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not a request id")
    );
    ctrl(&mut desk, 'u').await;
    typ(&mut desk, &uuid::Uuid::new_v4().to_string()).await;
    press(&mut desk, KeyCode::Enter).await;
    assert!(desk.popup.is_none());
    assert!(
        desk.status
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not found"),
        "the server was asked: {:?}",
        desk.status.error
    );

    // Typing in Doctors without `/` searches (a letter that is no Doctors command).
    let mut pat = new_app(&s);
    log_in(&mut pat, "pat@example.test").await;
    typ(&mut pat, "mira").await;
    assert!(pat.doctors.editing);
    let names: Vec<_> = pat
        .doctors
        .rows
        .iter()
        .map(|r| r.doctor.name.as_str())
        .collect();
    assert_eq!(names, ["Mira Haut"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_10_text_fields_follow_readline() {
    let (s, _) = clinic().await;
    let mut app = new_app(&s);
    log_in(&mut app, "pat@example.test").await;
    press(&mut app, KeyCode::Char('/')).await;
    typ(&mut app, "mira haut").await;
    let q = |a: &App| clinvault::tui::state::field_text(&a.doctors.query);
    ctrl(&mut app, 'w').await;
    assert_eq!(q(&app), "mira ");
    ctrl(&mut app, 'a').await;
    typ(&mut app, "x").await;
    assert_eq!(q(&app), "xmira ");
    ctrl(&mut app, 'k').await;
    assert_eq!(q(&app), "x");
    ctrl(&mut app, 'e').await;
    typ(&mut app, "yz").await;
    ctrl(&mut app, 'u').await;
    assert_eq!(q(&app), "", "Ctrl-U clears to the start, not undo");
    let screen = screen_text(&app);
    assert!(
        screen.contains("C-w word"),
        "the hint shows the field's keys: {screen}"
    );
    assert!(!screen.contains("q quit"), "not commands it would type");

    // Tab completes a path.
    let dir = s.dir.path().join("uploads");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("echo-2026.pdf"), b"x").expect("file");
    assert_eq!(
        clinvault::tui::update::complete_path(&format!("{}/ec", dir.display())),
        Some(format!("{}/echo-2026.pdf", dir.display()))
    );
    assert_eq!(
        clinvault::tui::update::complete_path(&format!("{}/upl", s.dir.path().display())),
        Some(format!("{}/uploads/", s.dir.path().display()))
    );
}

/// Presses that are not typed names: what the keystroke counts of #14 count.
struct Keys(u32);

impl Keys {
    async fn press(&mut self, app: &mut App, code: KeyCode) {
        self.0 += 1;
        press(app, code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_7_8_9_reception_books_a_named_patient_with_a_named_doctor() {
    let (s, _) = clinic().await;
    // Pat's address shares nothing with Kim's name, but "pat" is in Kim's address.
    s.patient("kim@patients.test", "Kim Lee").await;
    let mut desk = new_app(&s);
    log_in(&mut desk, "desk@clinic.test").await;

    // Before: Doctors search, calendar, day, slot, patient, yes.
    let mut before = Keys(0);
    before.press(&mut desk, KeyCode::Char('/')).await;
    typ(&mut desk, "mira").await;
    before.press(&mut desk, KeyCode::Enter).await; // leave the search
    before.press(&mut desk, KeyCode::Enter).await; // calendar
    before.press(&mut desk, KeyCode::Enter).await; // the day of the next free slot
    before.press(&mut desk, KeyCode::Enter).await; // its first slot
    typ(&mut desk, "kim").await;
    before.press(&mut desk, KeyCode::Enter).await;
    before.press(&mut desk, KeyCode::Char('y')).await;
    assert!(desk.status.error.is_none(), "{:?}", desk.status.error);
    assert_eq!(before.0, 7);

    // After: Bookings, `n`, the patient, the doctor, yes.
    let mut after = Keys(0);
    after.press(&mut desk, KeyCode::Char('3')).await;
    after.press(&mut desk, KeyCode::Char('n')).await;
    typ(&mut desk, "@patients").await;
    let Some(Popup::PickPatient(p)) = &desk.popup else {
        panic!("patient picker")
    };
    let names: Vec<_> = p.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Kim Lee"], "addresses once `@` is typed");
    for _ in 0.."@patients".len() {
        press(&mut desk, KeyCode::Backspace).await;
    }
    typ(&mut desk, "pat").await;
    let Some(Popup::PickPatient(p)) = &desk.popup else {
        panic!("patient picker")
    };
    // #14 point 9: names first; "pat" no longer matches kim@patients.test.
    let names: Vec<_> = p.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Pat Ient"]);
    after.press(&mut desk, KeyCode::Enter).await;
    assert!(matches!(desk.popup, Some(Popup::PickDoctor(_))));
    typ(&mut desk, "cardio").await;
    let next = desk.doctors.rows[0].next_free.clone().expect("a free slot");
    after.press(&mut desk, KeyCode::Enter).await;
    assert!(matches!(desk.popup, Some(Popup::Confirm(_))));
    after.press(&mut desk, KeyCode::Char('y')).await;
    assert!(desk.status.error.is_none(), "{:?}", desk.status.error);
    assert_eq!(after.0, 5, "≤ 8 keys plus the typed names");
    let booked = desk
        .bookings
        .items
        .iter()
        .find(|b| b.doctor_name == "Dana Herz")
        .expect("booked with Dana");
    assert_eq!(booked.start, next.start, "the first free slot");
    assert_eq!(booked.patient_name, "Pat Ient");
    println!(
        "keystrokes: reception books a named patient: before {} after {}",
        before.0, after.0
    );

    // #14 point 7: Doctors no longer offers the booked slot as "next free".
    let dana = desk
        .doctors
        .rows
        .iter()
        .find(|r| r.doctor.name == "Dana Herz")
        .expect("Dana listed");
    assert_ne!(dana.next_free.as_ref().map(|x| x.start), Some(next.start));

    // The `/` filter of Bookings; Esc leaves the field, a second Esc clears it.
    press(&mut desk, KeyCode::Char('/')).await;
    typ(&mut desk, "mira").await;
    assert_eq!(desk.bookings.items.len(), 1);
    assert_eq!(desk.bookings.items[0].doctor_name, "Mira Haut");
    press(&mut desk, KeyCode::Esc).await;
    assert!(!desk.bookings.filter.focused && desk.bookings.items.len() == 1);
    press(&mut desk, KeyCode::Esc).await;
    assert_eq!(desk.bookings.items.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_16_17_hints_true_to_context_unlock_returns_ledger_in_the_bar() {
    let (s, _) = clinic().await;
    // A patient on their booked slot is offered cancel only.
    let mut pat = patient_books_tomorrow(&s).await;
    press(&mut pat, KeyCode::Char('2')).await;
    let i = pat
        .day_rows()
        .iter()
        .position(|r| matches!(r, DayRow::Booked(_)))
        .expect("the booking is in the day");
    pat.calendar.row = i;
    press(&mut pat, KeyCode::Enter).await;
    let info = pat.status.info.clone().unwrap_or_default();
    assert_eq!(info, "c cancel", "no check in / complete for a patient");

    // Reception's status bar shows the ledger, not "idle"; unlocking returns to Bookings.
    let mut desk = new_app(&s);
    desk.idle_lock_minutes = 1;
    log_in(&mut desk, "desk@clinic.test").await;
    assert!(desk.ledger.head.is_some(), "synced at login");
    let screen = screen_text(&desk);
    assert!(screen.contains("ledger ✓"), "{screen}");
    assert!(!screen.contains("│ idle"), "{screen}");
    press(&mut desk, KeyCode::Char('3')).await;
    drive(&mut desk, Action::IdleLock).await;
    let msg = desk.login.message.clone().unwrap_or_default();
    assert!(msg.starts_with("Locked after 1 idle minute:"), "{msg}");
    typ(&mut desk, PASSWORD).await;
    press(&mut desk, KeyCode::Enter).await;
    assert_eq!(desk.screen, Screen::Main);
    assert_eq!(desk.pane, Pane::Bookings, "back where the lock found it");
}

/// #14 point 11: `Enter` reads a report in memory after every check; the text is sanitized,
/// nothing is written to disk, and Esc or the idle lock wipes it. A binary report gets a
/// summary whose SHA-256 is the file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_11_read_a_report_without_writing_it() {
    use sha2::{Digest, Sha256};
    let c = common::clinic::clinic_with(Db::Sqlite, |_| {}).await;
    let dir = tempfile::tempdir().expect("dir");
    let text =
        "# Echo\n\nFindings:\tnormal\n\u{1b}[2J\u{1b}]0;owned\u{7}\u{202e}evil\nEND-MARKER\n";
    let md = common::clinic::write_file(dir.path(), "echo.md", text.as_bytes());
    common::clinic::upload_file(&c, &md, "Echo").await;
    let bin = common::clinic::report_bytes(70_000, b"\0BINARY\0");
    let scan = common::clinic::write_file(dir.path(), "scan.dat", &bin);
    common::clinic::upload_file(&c, &scan, "Scan").await;

    let mut doc = new_app(&c.ts);
    log_in(&mut doc, "house@clinic.test").await;
    press(&mut doc, KeyCode::Char('4')).await;
    assert_eq!(doc.reports.rows.len(), 2, "{:?}", doc.reports.error);
    let echo = doc
        .reports
        .rows
        .iter()
        .position(|r| r.check.title() == Some("Echo"))
        .expect("the Markdown report");
    while doc.reports.selected != echo {
        press(&mut doc, KeyCode::Char('j')).await;
    }
    press(&mut doc, KeyCode::Enter).await;
    let Some(Popup::Viewer(v)) = &doc.popup else {
        panic!("the viewer opens: {:?}", doc.status.error)
    };
    assert_eq!(v.kind, "Markdown");
    assert_eq!(v.len, text.len() as u64);
    assert_eq!(v.sha256, hex::encode(Sha256::digest(text.as_bytes())));
    let screen = screen_text(&doc);
    assert!(screen.contains("END-MARKER"), "{screen}");
    assert!(screen.contains("Findings:    normal"), "{screen}");
    assert!(
        screen.contains("\\u{1b}[2J") && screen.contains("\\u{202e}evil"),
        "escapes are shown, not obeyed: {screen}"
    );
    assert!(!screen.contains('\u{1b}') && !screen.contains('\u{202e}'));
    assert!(matches!(
        doc.reports.rows[echo].check,
        Check::Verified { .. }
    ));
    // Scrolling moves the text; Esc closes and drops it.
    press(&mut doc, KeyCode::Char('j')).await;
    let Some(Popup::Viewer(v)) = &doc.popup else {
        panic!("still open")
    };
    assert_eq!(v.scroll, 1);
    press(&mut doc, KeyCode::Esc).await;
    assert!(doc.popup.is_none());
    assert!(!screen_text(&doc).contains("END-MARKER"));
    let written: Vec<_> = std::fs::read_dir(&doc.report_settings.download_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !written.iter().any(|n| n.to_string_lossy().contains("echo")),
        "nothing written: {written:?}"
    );

    // The binary one: a summary with the file's own hash.
    let scan_row = 1 - echo;
    press(
        &mut doc,
        KeyCode::Char(if scan_row > echo { 'j' } else { 'k' }),
    )
    .await;
    press(&mut doc, KeyCode::Char('o')).await;
    let Some(Popup::Viewer(v)) = &doc.popup else {
        panic!("the viewer opens: {:?}", doc.status.error)
    };
    assert_eq!(v.kind, "binary data");
    assert_eq!(v.sha256, hex::encode(Sha256::digest(&bin)));
    assert!(screen_text(&doc).contains("Not text"));

    // #14 point 14: `t` shows this report's trail only; Esc returns to every entry.
    press(&mut doc, KeyCode::Esc).await;
    let scan_id = doc.reports.rows[scan_row].summary.id;
    press(&mut doc, KeyCode::Char('t')).await;
    assert_eq!(doc.pane, Pane::Ledger);
    let trail: Vec<_> = doc.ledger.shown().into_iter().cloned().collect();
    assert!(!trail.is_empty(), "{:?}", doc.status.error);
    assert!(trail.iter().all(|e| e.report == Some(scan_id)), "{trail:?}");
    assert!(
        doc.ledger.entries.len() > trail.len(),
        "the others are hidden"
    );
    let screen = screen_text(&doc);
    assert!(screen.contains("Trail of Scan"), "{screen}");
    press(&mut doc, KeyCode::Esc).await;
    assert!(doc.ledger.trail.is_none());
    assert_eq!(doc.ledger.shown().len(), doc.ledger.entries.len());
    // #14 point 8: the Ledger's list filters too.
    press(&mut doc, KeyCode::Char('/')).await;
    typ(&mut doc, "committed").await;
    let shown: Vec<_> = doc.ledger.shown().into_iter().cloned().collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|e| e.text.contains("committed")));
    press(&mut doc, KeyCode::Esc).await;
    press(&mut doc, KeyCode::Esc).await;
    assert_eq!(doc.ledger.shown().len(), doc.ledger.entries.len());
    press(&mut doc, KeyCode::Char('4')).await;

    // The idle lock closes it with everything else.
    press(&mut doc, KeyCode::Enter).await;
    assert!(matches!(doc.popup, Some(Popup::Viewer(_))));
    drive(&mut doc, Action::IdleLock).await;
    assert!(doc.popup.is_none());
    assert!(!screen_text(&doc).contains("SHA-256"));
}

/// #14 point 12: two release codes for reports by the same doctor on the same day are told
/// apart by the request id (as in the mail), the time asked and the size; a wrong code's
/// answer is shown in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_12_otp_rows_can_be_told_apart() {
    let c = common::clinic::clinic_with(Db::Sqlite, |_| {}).await;
    let dir = tempfile::tempdir().expect("dir");
    let small = common::clinic::write_file(dir.path(), "a.txt", b"small report");
    let big = common::clinic::write_file(
        dir.path(),
        "b.txt",
        &common::clinic::report_bytes(70_000, b"BIG"),
    );
    let first = common::clinic::upload_file(&c, &small, "A").await;
    let mail_a = c.ts.last_mail("pat@clinic.test");
    common::clinic::upload_file(&c, &big, "B").await;
    let mail_b = c.ts.last_mail("pat@clinic.test");
    let _ = first;
    // The full request id, as the mail prints it after the row's own words.
    let request_of = |m: &str| {
        // Decoded as the mailbox shows it (the "·" makes the body quoted-printable).
        let m = &clinvault::tui::tasks::parse_mail(String::new(), m).body;
        let at = m
            .find("the full request id is ")
            .expect("the mail names its request")
            + 23;
        m[at..at + 36].to_string()
    };
    let (req_a, req_b) = (request_of(&mail_a), request_of(&mail_b));
    for (m, r) in [(&mail_a, &req_a), (&mail_b, &req_b)] {
        let m = &clinvault::tui::tasks::parse_mail(String::new(), m).body;
        assert!(
            m.contains(&format!("(request {} · asked ", &r[..8])),
            "the mail uses the OTP row's words: {m}"
        );
    }
    assert_ne!(req_a[..8], req_b[..8]);

    let mut pat = new_app(&c.ts);
    log_in(&mut pat, "pat@clinic.test").await;
    press(&mut pat, KeyCode::Char('5')).await;
    assert_eq!(pat.otp.items.len(), 2, "{:?}", pat.otp.error);
    let screen = screen_text(&pat);
    for (req, size) in [(&req_a, "12 B"), (&req_b, "68.4 KiB")] {
        let line = screen
            .lines()
            .find(|l| l.contains(&format!("request {}", &req[..8])))
            .unwrap_or_else(|| panic!("a row names request {req}: {screen}"));
        assert!(line.contains(size) && line.contains("asked "), "{line}");
    }
    // The code of one request typed on the other row: the server's answer, in full.
    let code_a = common::six_digits(&mail_a);
    let row_b = pat
        .otp
        .items
        .iter()
        .position(|p| p.request_id.to_string() == req_b)
        .expect("row of B");
    while pat.otp.selected != row_b {
        press(&mut pat, KeyCode::Char('j')).await;
    }
    press(&mut pat, KeyCode::Enter).await;
    typ(&mut pat, &code_a).await;
    press(&mut pat, KeyCode::Enter).await;
    let err = pat.status.error.clone().expect("the wrong row is refused");
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let shown = flat(
        &screen_text(&pat)
            .lines()
            .rev()
            .skip(2)
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" "),
    );
    assert!(
        shown.contains(&flat(&format!("✗ {err}"))),
        "the whole answer is on screen: {shown:?} vs {err:?}"
    );
}

/// #17 point 12 (the terminal's part): a password field's text is ours, not the widget's; it
/// is wiped when submitted, only the login effect holds it. #14 point 17: registration asks
/// for the password twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue17_12_password_fields_wiped_on_submit_registration_asks_twice() {
    let s = common::start_server(Db::Sqlite).await;
    let mut app = new_app(&s);
    typ(&mut app, "pat@example.test").await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, "hunter2 secret").await;
    assert!(
        !screen_text(&app).contains("hunter2"),
        "only the mask is drawn"
    );
    assert!(
        !app.login.password.mask.lines().concat().contains("hunter"),
        "the widget never holds the text"
    );
    let fx = update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    assert!(app.login.password.is_empty(), "wiped on submit");
    assert!(
        fx.iter().any(|e| matches!(
            e,
            Effect::Login { password, .. } if password.as_str() == "hunter2 secret"
        )),
        "the login got it"
    );

    let mut app = new_app(&s);
    app.screen = Screen::Register;
    let pw = "violet tractor sings under a quiet moon";
    typ(&mut app, "nia@example.test").await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, "Nia New").await;
    press(&mut app, KeyCode::Tab).await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, pw).await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, "violet tractor sings under a quiet mood").await;
    let fx = update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    assert!(fx.is_empty(), "nothing sent with two different passwords");
    assert!(
        app.register
            .message
            .as_deref()
            .unwrap_or("")
            .contains("differ"),
        "{:?}",
        app.register.message
    );
    drive(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
    )
    .await;
    typ(&mut app, pw).await;
    let fx = update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    assert!(
        fx.iter().any(|e| matches!(e, Effect::VerifyEmail { .. })),
        "the same twice: the code is mailed ({:?})",
        app.register.message
    );
}

/// #14 point 8, the other two counts: a doctor finds and opens a report (the `/` filter of
/// Reports and the viewer), and a patient releases a report with the mailed code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_8_keystrokes_doctor_opens_a_report_patient_releases_one() {
    let c = common::clinic::clinic_with(Db::Sqlite, |_| {}).await;
    let dir = tempfile::tempdir().expect("dir");
    for (file, title) in [
        ("a.txt", "Allergy test"),
        ("e.txt", "Echo findings"),
        ("z.txt", "Zinc levels"),
    ] {
        let f = common::clinic::write_file(dir.path(), file, format!("{title}\n").as_bytes());
        common::clinic::upload_file(&c, &f, title).await;
    }
    let last_mail = c.ts.last_mail("pat@clinic.test");

    let mut doc = new_app(&c.ts);
    log_in(&mut doc, "house@clinic.test").await;
    // Before: down the list to the report, then save it (the only way to read it).
    let mut before = Keys(0);
    before.press(&mut doc, KeyCode::Char('4')).await;
    let at = doc
        .reports
        .rows
        .iter()
        .position(|r| r.check.title() == Some("Echo findings"))
        .expect("listed");
    for _ in 0..at {
        before.press(&mut doc, KeyCode::Char('j')).await;
    }
    before.press(&mut doc, KeyCode::Char('s')).await;
    before.press(&mut doc, KeyCode::Enter).await;
    assert!(doc.status.error.is_none(), "{:?}", doc.status.error);
    // After: the filter and the viewer, nothing written.
    press(&mut doc, KeyCode::Char('1')).await;
    let mut after = Keys(0);
    after.press(&mut doc, KeyCode::Char('4')).await;
    after.press(&mut doc, KeyCode::Char('/')).await;
    typ(&mut doc, "echo").await;
    assert_eq!(doc.reports.visible(doc.tz).len(), 1);
    assert!(screen_text(&doc).contains("Reports · 1 of 3"));
    after.press(&mut doc, KeyCode::Enter).await; // leave the filter
    after.press(&mut doc, KeyCode::Enter).await; // read it
    let Some(Popup::Viewer(v)) = &doc.popup else {
        panic!("the viewer: {:?}", doc.status.error)
    };
    assert_eq!(v.title, "Echo findings");
    assert!(after.0 <= 4, "{}", after.0);
    println!(
        "keystrokes: a doctor finds and opens a report: before {} (down to row {} of 3, saved \
         to disk) after {} (filtered, read in memory)",
        before.0,
        at + 1,
        after.0
    );
    press(&mut doc, KeyCode::Esc).await;
    press(&mut doc, KeyCode::Esc).await;
    assert_eq!(
        doc.reports.visible(doc.tz).len(),
        3,
        "Esc clears the filter"
    );

    // A patient releases the report of the newest mail: its row is the one naming the
    // request the mail names.
    let at = last_mail.find("(request ").expect("request in the mail") + 9;
    let request = last_mail[at..at + 8].to_string();
    let code = common::six_digits(&last_mail);
    let mut pat = new_app(&c.ts);
    log_in(&mut pat, "pat@clinic.test").await;
    let mut keys = Keys(0);
    keys.press(&mut pat, KeyCode::Char('5')).await;
    assert_eq!(pat.otp.items.len(), 3);
    let row = pat
        .otp
        .items
        .iter()
        .position(|p| p.request_id.simple().to_string().starts_with(&request))
        .expect("the mail's request is listed");
    assert!(screen_text(&pat).contains(&format!("request {request}")));
    for _ in 0..row {
        keys.press(&mut pat, KeyCode::Char('j')).await;
    }
    keys.press(&mut pat, KeyCode::Enter).await;
    typ(&mut pat, &code).await;
    keys.press(&mut pat, KeyCode::Enter).await;
    assert!(pat.status.error.is_none(), "{:?}", pat.status.error);
    assert_eq!(pat.otp.items.len(), 2, "released");
    println!(
        "keystrokes: a patient releases a report with the mailed code: {} (row {} of 3) plus \
         the six digits",
        keys.0,
        row + 1
    );
}

/// #14 point 8: the OTP list and the demo Mailbox have the same `/` filter as the other lists
/// (every word must appear; Esc leaves the field, a second Esc clears it; "N of M" in the
/// title), and a key acts on the row the filter shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_8_otp_and_mailbox_lists_filter() {
    let c = common::clinic::clinic_with(Db::Sqlite, |_| {}).await;
    let dir = tempfile::tempdir().expect("dir");
    let a = common::clinic::write_file(dir.path(), "a.txt", b"first report");
    let b = common::clinic::write_file(dir.path(), "b.txt", b"second report");
    common::clinic::upload_file(&c, &a, "A").await;
    let mail_a = c.ts.last_mail("pat@clinic.test");
    common::clinic::upload_file(&c, &b, "B").await;
    let mail_b = c.ts.last_mail("pat@clinic.test");
    let request_of = |m: &str| {
        // Decoded as the mailbox shows it (the "·" makes the body quoted-printable).
        let m = &clinvault::tui::tasks::parse_mail(String::new(), m).body;
        let at = m
            .find("the full request id is ")
            .expect("the mail names its request")
            + 23;
        m[at..at + 36].to_string()
    };
    let (req_a, req_b) = (request_of(&mail_a), request_of(&mail_b));

    let mut pat = new_app(&c.ts);
    log_in(&mut pat, "pat@clinic.test").await;
    press(&mut pat, KeyCode::Char('5')).await;
    assert_eq!(pat.otp.items.len(), 2, "{:?}", pat.otp.error);

    // B's short id leaves B's row only; it is the one Enter acts on.
    press(&mut pat, KeyCode::Char('/')).await;
    assert!(pat.text_focus());
    typ(&mut pat, &req_b[..8]).await;
    assert_eq!(pat.otp.items.len(), 1);
    assert_eq!(pat.otp.items[0].request_id.to_string(), req_b);
    assert!(screen_text(&pat).contains("Codes to enter · 1 of 2"));
    press(&mut pat, KeyCode::Esc).await;
    assert!(
        !pat.otp.filter.focused && pat.otp.items.len() == 1,
        "Esc keeps the filter"
    );
    press(&mut pat, KeyCode::Esc).await;
    assert_eq!(pat.otp.items.len(), 2, "a second Esc clears it");
    press(&mut pat, KeyCode::Char('/')).await;
    typ(&mut pat, "no-such-words").await;
    assert!(pat.otp.items.is_empty());
    assert!(screen_text(&pat).contains("No code matches the filter"));
    press(&mut pat, KeyCode::Esc).await;
    press(&mut pat, KeyCode::Esc).await;
    press(&mut pat, KeyCode::Char('/')).await;
    typ(&mut pat, &req_b[..8]).await;
    press(&mut pat, KeyCode::Enter).await; // leave the field
    press(&mut pat, KeyCode::Enter).await; // type the code for the row shown
    typ(&mut pat, &common::six_digits(&mail_b)).await;
    press(&mut pat, KeyCode::Enter).await;
    assert!(pat.status.error.is_none(), "{:?}", pat.status.error);
    assert_eq!(pat.otp.all.len(), 1, "B released");
    assert_eq!(pat.otp.all[0].request_id.to_string(), req_a);
    assert!(pat.otp.items.is_empty(), "the filter still names B");

    // The demo Mailbox: the outbox the server wrote.
    pat.server.demo = true;
    pat.server.data_dir = Some(c.ts.dir.path().to_path_buf());
    press(&mut pat, KeyCode::Char('7')).await;
    assert_eq!(pat.pane, Pane::Mailbox);
    let total = pat.mailbox.all.len();
    let to_pat = c.ts.mails_to("pat@clinic.test");
    assert!(
        to_pat >= 2 && total > to_pat,
        "{total} mails, {to_pat} to pat"
    );
    press(&mut pat, KeyCode::Char('/')).await;
    typ(&mut pat, "PAT@clinic.test").await;
    assert_eq!(pat.mailbox.items.len(), to_pat);
    assert!(pat.mailbox.items.iter().all(|m| m.to == "pat@clinic.test"));
    assert!(screen_text(&pat).contains(&format!("Mailbox (demo outbox) · {to_pat} of {total}")));
    press(&mut pat, KeyCode::Down).await;
    assert_eq!(pat.mailbox.selected, 1, "Down moves in the filtered list");
    press(&mut pat, KeyCode::Char(' ')).await;
    typ(&mut pat, "zzzz").await;
    assert!(pat.mailbox.items.is_empty());
    assert!(screen_text(&pat).contains("No mail matches the filter"));
    press(&mut pat, KeyCode::Esc).await;
    press(&mut pat, KeyCode::Esc).await;
    assert_eq!(pat.mailbox.items.len(), total);
    assert!(!pat.text_focus());
}

/// #14 point 15: the calendar shows "off" the same way for a patient (who may not read the
/// doctor's availability) as for reception: the days without opening hours come with the
/// slots answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue14_15_patients_see_off_like_staff() {
    use chrono::Datelike;
    let (s, dana) = clinic().await;
    let today = Clock::system(TZ).today;
    // Next month: every day of it is ahead, so it has weekends and the day off to show.
    let next_month = today
        .with_day(1)
        .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
        .expect("next month");
    let day_off = next_month + Duration::days(9);
    let weekdays = Availability {
        weekly: ["mon", "tue", "wed", "thu", "fri"]
            .iter()
            .map(|d| WeeklyBlock {
                weekday: d.to_string(),
                start: "09:00".into(),
                end: "12:00".into(),
                slot_minutes: 30,
            })
            .collect(),
        days_off: vec![day_off],
    };
    // A doctor sets their own hours.
    s.login("dana@clinic.test")
        .await
        .set_availability(dana, &weekdays)
        .await
        .expect("availability");
    let open_dana = |email: &'static str| {
        let s = &s;
        async move {
            let mut app = new_app(s);
            log_in(&mut app, email).await;
            press(&mut app, KeyCode::Char('1')).await;
            press(&mut app, KeyCode::Char('/')).await;
            typ(&mut app, "herz").await;
            press(&mut app, KeyCode::Esc).await;
            press(&mut app, KeyCode::Enter).await;
            assert_eq!(app.pane, Pane::Calendar);
            while app.calendar.selected.is_some_and(|d| d < next_month) {
                press(&mut app, KeyCode::Char('>')).await;
            }
            assert!(app.calendar.data.is_some(), "{:?}", app.calendar.error);
            app
        }
    };
    let pat = open_dana("pat@example.test").await;
    let desk = open_dana("desk@clinic.test").await;
    let month = pat.calendar.selected.expect("a day");
    assert_eq!(month.with_day(1), Some(next_month));
    let expected: Vec<chrono::NaiveDate> = (1..=31)
        .filter_map(|d| month.with_day(d))
        .filter(|d| d.weekday().num_days_from_monday() >= 5 || *d == day_off)
        .collect();
    let closed = |a: &App| a.calendar.data.as_ref().map(|d| d.closed.clone());
    assert_eq!(closed(&pat), Some(expected.clone()));
    assert_eq!(closed(&desk), closed(&pat), "the same days for every role");
    assert!(
        pat.calendar
            .data
            .as_ref()
            .is_some_and(|d| d.availability.is_none()),
        "the patient still does not read the availability"
    );
    assert!(
        expected.len() >= 9,
        "weekends and the day off: {expected:?}"
    );
    // The grid's "off" cells, the legend's line left out.
    let offs = |a: &App| {
        screen_text(a)
            .lines()
            .filter(|l| !l.contains("day off"))
            .map(|l| l.matches(" off ").count())
            .sum::<usize>()
    };
    assert_eq!(offs(&pat), expected.len(), "{}", screen_text(&pat));
    assert_eq!(offs(&desk), offs(&pat));
}

// ---- Issue 15: TOTP second factor ----

/// The six digits for `secret_base32` at the server's TOTP clock (now + its shift).
fn totp_code(secret_base32: &str, shift: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_base32)
        .unwrap()
        .as_bytes()
        .to_vec();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    totp.generate((chrono::Utc::now().timestamp() + shift) as u64)
        .to_string()
}

/// A doctor whose role requires TOTP: the password leads to the enrolment screen (QR code),
/// the first code to the recovery codes, Enter to the session; the next login asks for a
/// code, a wrong one is said and can be retried, the right one logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue15_totp_enrolment_and_code_step() {
    let s = common::start_with(Db::Sqlite, |c| {
        c.server.require_totp_for = vec![Role::Doctor];
    })
    .await;
    let admin = s.admin().await;
    admin
        .invite(&clinvault::api::InviteRequest {
            role: Role::Doctor,
            email: "dana@clinic.test".into(),
            name: "Dana Herz".into(),
            specialty: "Cardiology".into(),
            bio: "Years of practice.".into(),
        })
        .await
        .unwrap();
    let code = common::invite_code(&s.last_mail("dana@clinic.test"));
    s.client().register_invite(&code, PASSWORD).await.unwrap();

    let mut app = new_app(&s);
    typ(&mut app, "dana@clinic.test").await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, PASSWORD).await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Totp, "{:?}", app.login.message);
    let secret = app
        .totp
        .enrolment
        .as_ref()
        .expect("enrolment at login")
        .secret_base32
        .clone();
    assert!(screen_text(&app).contains("set up the second factor"));
    typ(&mut app, &totp_code(&secret, 0)).await;
    press(&mut app, KeyCode::Enter).await;
    let text = screen_text(&app);
    assert!(text.contains("recovery codes"), "{text}");
    assert_eq!(app.totp.recovery.as_ref().unwrap().codes.len(), 10);
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Main);
    assert!(app.session.is_some());

    // The next login: the code step.
    let shift = s.handle.shift_totp_clock(30);
    let mut app = new_app(&s);
    typ(&mut app, "dana@clinic.test").await;
    press(&mut app, KeyCode::Tab).await;
    typ(&mut app, PASSWORD).await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Totp);
    assert!(app.totp.enrolment.is_none());
    let good = totp_code(&secret, shift);
    let bad: String = good
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    typ(&mut app, &bad).await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Totp);
    assert!(
        app.totp
            .message
            .as_deref()
            .unwrap_or("")
            .contains("not valid"),
        "{:?}",
        app.totp.message
    );
    typ(&mut app, &good).await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Main, "{:?}", app.totp.message);
    s.handle.shutdown().await.unwrap();
}

/// `:totp` from a session (a doctor whose role does not require it): the enrolment screen,
/// the first code, the recovery codes once, back to the panes; the next login asks for a code.
/// A patient is told TOTP is for staff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue15_totp_enrol_from_the_palette() {
    let (s, _) = clinic().await;
    let mut app = new_app(&s);
    log_in(&mut app, "dana@clinic.test").await;
    press(&mut app, KeyCode::Char(':')).await;
    typ(&mut app, "totp").await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Totp, "{:?}", app.status.error);
    assert!(app.totp.signed_in);
    let secret = app.totp.enrolment.as_ref().unwrap().secret_base32.clone();
    typ(&mut app, &totp_code(&secret, 0)).await;
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.totp.recovery.as_ref().map(|r| r.codes.len()), Some(10));
    assert!(screen_text(&app).contains("recovery codes"));
    press(&mut app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Main);
    assert!(app.session.is_some(), "the session goes on");
    assert!(app.totp.recovery.is_none());
    let st = app
        .session
        .as_ref()
        .unwrap()
        .client
        .totp_status()
        .await
        .unwrap();
    assert!(st.enrolled && !st.required);

    // The next login stops at the code step.
    let mut again = new_app(&s);
    typ(&mut again, "dana@clinic.test").await;
    press(&mut again, KeyCode::Tab).await;
    typ(&mut again, PASSWORD).await;
    press(&mut again, KeyCode::Enter).await;
    assert_eq!(again.screen, Screen::Totp);
    assert!(!again.totp.signed_in && again.totp.enrolment.is_none());

    let mut pat = new_app(&s);
    log_in(&mut pat, "pat@example.test").await;
    press(&mut pat, KeyCode::Char(':')).await;
    typ(&mut pat, "totp").await;
    press(&mut pat, KeyCode::Enter).await;
    assert_eq!(pat.screen, Screen::Main);
    assert!(
        pat.status
            .error
            .as_deref()
            .unwrap_or("")
            .contains("for the clinic's staff"),
        "{:?}",
        pat.status.error
    );
    s.handle.shutdown().await.unwrap();
}

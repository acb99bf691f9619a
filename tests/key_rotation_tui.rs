//! Issue 15 point 3 in the terminal client: after a patient's key reset, the author opens
//! the report's grants, picks the re-wrap request and sees the rotation as a loud popup (name,
//! date, authoriser, both fingerprints); nothing is wrapped until `a` accepts it, then the
//! usual wrap confirmation follows. Real server, every effect run for real.

mod common;

use ratatui::crossterm::event::KeyCode;

use clinvault::api::Role;
use clinvault::client::ledger::Ledger;
use clinvault::client::reports::{TransferOptions, download};
use clinvault::tui::keymap::KeyMap;
use clinvault::tui::state::{App, Clock, Popup, ReportSettings, Screen, ServerInfo};
use clinvault::tui::theme::Theme;
use common::clinic::{clinic_with, release, report_bytes, upload_file, write_file};
use common::tui::{TZ, press, screen_text};
use common::{Db, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_is_a_popup_with_an_accept_step() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let original = write_file(work.path(), "r.pdf", &report_bytes(20_000, b"tui"));
    let report = upload_file(&c, &original, "R").await.report_id;
    release(&c).await;

    // The author's terminal client, which saw the patient's keys before the reset.
    let state = work.path().join("doc-tui");
    let l = Ledger::sync(&c.doc.c, &state, None, 3600).await.unwrap();
    l.user_keys(c.pat.id, Some(Role::Patient)).await.unwrap();
    drop(l);
    let mut doc = App::new(
        Clock::system(TZ),
        Theme::mono(),
        KeyMap::default(),
        ServerInfo {
            url: c.ts.url.clone(),
            demo: false,
            data_dir: None,
        },
    );
    doc.tz = TZ;
    doc.client_template = Some(c.ts.client());
    doc.report_settings = ReportSettings {
        state_dir: state.clone(),
        download_dir: state,
        ..ReportSettings::default()
    };

    // The patient resets by the mailed code.
    c.ts.client().verify_email(&c.pat.email).await.unwrap();
    let mail = c.ts.last_mail(&c.pat.email);
    let code = common::invite_code(&mail);
    let mut own = c.ts.client();
    let (logged, _) = own
        .complete_key_reset(&c.pat.email, &code, "seven lanterns drift over the harbour")
        .await
        .unwrap();

    for ch in c.doc.email.chars() {
        press(&mut doc, KeyCode::Char(ch)).await;
    }
    press(&mut doc, KeyCode::Tab).await;
    for ch in PASSWORD.chars() {
        press(&mut doc, KeyCode::Char(ch)).await;
    }
    press(&mut doc, KeyCode::Enter).await;
    assert_eq!(doc.screen, Screen::Main, "{:?}", doc.login.message);
    press(&mut doc, KeyCode::Char('4')).await;
    assert_eq!(doc.reports.rows.len(), 1, "{:?}", doc.reports.error);
    press(&mut doc, KeyCode::Char('g')).await;
    let Some(Popup::Grants(g)) = &doc.popup else {
        panic!("grants listed: {:?}", doc.status.error)
    };
    assert_eq!(g.items.len(), 1, "the re-wrap request");
    assert_eq!(g.items[0].reader_id, c.pat.id);
    press(&mut doc, KeyCode::Enter).await;
    let Some(Popup::KeyRotated(r)) = &doc.popup else {
        panic!("the rotation first: {:?}", doc.status.error)
    };
    assert_eq!(r.user, c.pat.id);
    let screen = screen_text(&doc);
    println!("{screen}");
    let old_fp = clinvault::seal::fingerprint(&c.pat.me.secrets.public());
    let new_fp = clinvault::seal::fingerprint(&logged.secrets.public());
    for want in [
        "KEY CHANGED",
        "Patricia Patient's key changed on",
        "their own verified email",
        old_fp.as_str(),
        new_fp.as_str(),
        "a accept",
    ] {
        assert!(screen.contains(want), "{want:?} missing:\n{screen}");
    }
    // Other keys do nothing; Esc closes without accepting.
    press(&mut doc, KeyCode::Char('y')).await;
    assert!(matches!(doc.popup, Some(Popup::KeyRotated(_))));
    press(&mut doc, KeyCode::Esc).await;
    assert!(doc.popup.is_none());
    // Again, and accept: the wrap confirmation with the new fingerprint follows.
    press(&mut doc, KeyCode::Char('g')).await;
    press(&mut doc, KeyCode::Enter).await;
    assert!(matches!(doc.popup, Some(Popup::KeyRotated(_))));
    press(&mut doc, KeyCode::Char('a')).await;
    let Some(Popup::Wrap(w)) = &doc.popup else {
        panic!("the wrap is confirmed next: {:?}", doc.status.error)
    };
    assert_eq!(w.reader_fingerprint, new_fp);
    assert!(screen_text(&doc).contains("re-wrap after key rotation"));
    press(&mut doc, KeyCode::Char('y')).await;
    assert!(doc.status.error.is_none(), "{:?}", doc.status.error);

    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::sync(&own, dir.path(), None, 3600).await.unwrap();
    let got = work.path().join("back.pdf");
    download(&own, &logged, &l, report, &got, &TransferOptions::new(2))
        .await
        .expect("the patient reads it again");
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&original).unwrap());
    c.ts.handle.shutdown().await.unwrap();
}

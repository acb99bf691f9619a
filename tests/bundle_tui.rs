//! The terminal client's `x` on a report (issue 16): a confirmation that says the bundle holds
//! the report key in clear, a path, then a bundle that verifies offline. Every effect runs for
//! real against a server over loopback.

mod common;

use ratatui::crossterm::event::KeyCode;

use clinvault::tui::state::{App, Pane, PathFor, Popup};
use common::clinic::{clinic_with, release, upload_file, write_file};
use common::tui::{log_in, press, screen_text};
use common::{Db, TestServer};

/// A client whose state is in `dir/state` and whose bundles land in `dir`.
fn new_app(s: &TestServer, dir: &std::path::Path) -> App {
    common::tui::new_app_in(s, &dir.join("state"), dir)
}

fn bundles(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cvb"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_exports_a_bundle_after_saying_the_key_is_inside() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let data = b"Echo findings: normal.\n".to_vec();
    let f = write_file(work.path(), "echo.txt", &data);
    upload_file(&c, &f, "Echo findings").await;
    release(&c).await;
    let key = c.pat.ledger().await.unwrap().key().to_owned();

    let out = tempfile::tempdir().unwrap();
    let mut pat = new_app(&c.ts, out.path());
    log_in(&mut pat, "pat@clinic.test").await;
    press(&mut pat, KeyCode::Char('4')).await;
    assert_eq!(pat.pane, Pane::Reports);
    assert_eq!(pat.reports.rows.len(), 1);

    // `n` at the confirmation: nothing happens.
    press(&mut pat, KeyCode::Char('x')).await;
    let screen = screen_text(&pat);
    assert!(
        screen.contains("key in clear") && screen.contains("anyone who has the file"),
        "{screen}"
    );
    press(&mut pat, KeyCode::Char('n')).await;
    assert!(pat.popup.is_none());
    assert!(bundles(out.path()).is_empty());

    // `y`, then the offered path.
    press(&mut pat, KeyCode::Char('x')).await;
    press(&mut pat, KeyCode::Char('y')).await;
    assert!(
        matches!(&pat.popup, Some(Popup::Path(p)) if matches!(p.purpose, PathFor::Export { .. })),
        "asks where"
    );
    assert!(screen_text(&pat).contains("Write the bundle"));
    press(&mut pat, KeyCode::Enter).await;
    assert!(pat.status.error.is_none(), "{:?}", pat.status.error);
    assert!(
        pat.status
            .info
            .as_deref()
            .is_some_and(|m| m.starts_with("Bundle written ✓")),
        "{:?}",
        pat.status.info
    );
    let written = bundles(out.path());
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(
        written[0].file_name().unwrap(),
        "Echo_findings.cvb",
        "named after the title"
    );
    let v = clinvault::bundle::verify_bytes(
        &std::fs::read(&written[0]).unwrap(),
        &clinvault::bundle::Trust {
            ledger_key: key,
            witnesses: vec![],
            quorum: 0,
        },
    )
    .expect("the bundle verifies offline");
    assert_eq!(&v.plaintext[..], &data[..]);

    // The same path again: refused, nothing overwritten.
    let before = std::fs::read(&written[0]).unwrap();
    press(&mut pat, KeyCode::Char('x')).await;
    press(&mut pat, KeyCode::Char('y')).await;
    press(&mut pat, KeyCode::Enter).await;
    assert!(
        pat.status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("exists")),
        "{:?}",
        pat.status.error
    );
    assert_eq!(std::fs::read(&written[0]).unwrap(), before);
}

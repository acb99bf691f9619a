//! The terminal client's `x` on a report (issue 16): a confirmation that says the bundle holds
//! the report key in clear, a path, then a bundle that verifies offline. Every effect runs for
//! real against a server over loopback.

mod common;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use clinvault::tui::action::{Action, Effect};
use clinvault::tui::keymap::KeyMap;
use clinvault::tui::state::{App, Clock, Pane, PathFor, Popup, ReportSettings, Screen, ServerInfo};
use clinvault::tui::tasks::perform;
use clinvault::tui::theme::Theme;
use clinvault::tui::update::update;
use common::clinic::{clinic_with, release, upload_file, write_file};
use common::{Db, PASSWORD, TestServer};

const TZ: chrono_tz::Tz = chrono_tz::Europe::Berlin;

async fn drive(app: &mut App, action: Action) {
    let mut queue = vec![action];
    while let Some(a) = queue.pop() {
        app.clock = Clock::system(TZ);
        for e in update(app, a) {
            match e {
                Effect::Later { action, .. } => queue.push(*action),
                other => {
                    if let Some(next) = perform(other).await {
                        queue.push(next);
                    }
                }
            }
        }
    }
}

async fn press(app: &mut App, code: KeyCode) {
    drive(app, Action::Key(KeyEvent::new(code, KeyModifiers::NONE))).await;
}

async fn typ(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c)).await;
    }
}

fn new_app(s: &TestServer, dir: &std::path::Path) -> App {
    let mut app = App::new(
        Clock::system(TZ),
        Theme::mono(),
        KeyMap::default(),
        ServerInfo {
            url: s.url.clone(),
            demo: false,
            data_dir: None,
        },
    );
    app.tz = TZ;
    app.client_template = Some(s.client());
    app.report_settings = ReportSettings {
        state_dir: dir.join("state"),
        download_dir: dir.to_path_buf(),
        ..ReportSettings::default()
    };
    app
}

async fn log_in(app: &mut App, email: &str) {
    typ(app, email).await;
    press(app, KeyCode::Tab).await;
    typ(app, PASSWORD).await;
    press(app, KeyCode::Enter).await;
    assert_eq!(app.screen, Screen::Main, "{:?}", app.login.message);
}

fn screen_text(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    t.draw(|f| clinvault::tui::view::render(app, f))
        .expect("draw");
    let buf = t.backend().buffer();
    (0..24)
        .map(|y| (0..80).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
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

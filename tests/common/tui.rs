//! Driving the terminal client in tests: keys in, every effect run for real against a test
//! server (debounces at once), the screen read back at 80×24.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use clinvault::tui::action::{Action, Effect};
use clinvault::tui::keymap::KeyMap;
use clinvault::tui::state::{App, Clock, ReportSettings, Screen, ServerInfo};
use clinvault::tui::tasks::perform;
use clinvault::tui::theme::Theme;
use clinvault::tui::update::update;

use super::{PASSWORD, TestServer};

pub const TZ: chrono_tz::Tz = chrono_tz::Europe::Berlin;

/// Applies `action`, then runs every effect it asks for (debounces at once) until quiet.
pub async fn drive(app: &mut App, action: Action) {
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

pub async fn press(app: &mut App, code: KeyCode) {
    drive(app, Action::Key(KeyEvent::new(code, KeyModifiers::NONE))).await;
}

pub async fn typ(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c)).await;
    }
}

/// A client on `s`, its ledger heads and upload state in a folder of this test (inside the
/// server's temporary folder, removed with it), downloads beside them.
pub fn new_app(s: &TestServer) -> App {
    let state = s
        .dir
        .path()
        .join(format!("client-{}", uuid::Uuid::new_v4().simple()));
    new_app_in(s, &state, &state)
}

/// A client on `s` with its state in `state_dir` and downloads in `download_dir`.
pub fn new_app_in(
    s: &TestServer,
    state_dir: &std::path::Path,
    download_dir: &std::path::Path,
) -> App {
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
        state_dir: state_dir.to_path_buf(),
        download_dir: download_dir.to_path_buf(),
        ..ReportSettings::default()
    };
    app
}

/// Types the address and the test password on the login screen; the main screen must follow.
pub async fn log_in(app: &mut App, email: &str) {
    typ(app, email).await;
    press(app, KeyCode::Tab).await;
    typ(app, PASSWORD).await;
    press(app, KeyCode::Enter).await;
    assert_eq!(
        app.screen,
        Screen::Main,
        "logged in: {:?}",
        app.login.message
    );
}

/// The screen as drawn at 80×24, one line per row.
pub fn screen_text(app: &App) -> String {
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    t.draw(|f| clinvault::tui::view::render(app, f))
        .expect("draw");
    let buf = t.backend().buffer();
    (0..24)
        .map(|y| (0..80).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

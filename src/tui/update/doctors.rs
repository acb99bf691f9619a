//! The Doctors pane: search as you type.

use super::*;

pub(super) fn search_doctors(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(client) = client(app) else { return };
    app.doctors.loading = true;
    let query = field_text(&app.doctors.query).trim().to_string();
    app.doctors.shown_query = query.clone();
    let id = app.doctors.request_id;
    let today = app.clock.today;
    net(
        app,
        fx,
        Effect::SearchDoctors {
            client,
            id,
            query,
            today,
        },
    );
}

pub(super) fn doctors_debounce(app: &mut App, fx: &mut Vec<Effect>) {
    app.doctors.request_id += 1;
    app.doctors.loading = true;
    fx.push(Effect::Later {
        after: SEARCH_DEBOUNCE,
        action: Box::new(Action::SearchDue {
            id: app.doctors.request_id,
        }),
    });
}

/// In Doctors, a printable key that means nothing there starts the search with it (like
/// fzf). Keys of this pane and global ones (j, k, r, q, L, M, digits…) keep their meaning.
pub(super) fn starts_search(app: &App, k: &KeyEvent) -> bool {
    let KeyCode::Char(c) = k.code else {
        return false;
    };
    if app.pane != Pane::Doctors
        || c.is_control()
        || k.modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return false;
    }
    match app.keys.resolve(k) {
        None => true,
        Some(cmd) => crate::tui::keymap::info(cmd)
            .and_then(|i| i.panes)
            .is_some_and(|p| !p.contains(&Pane::Doctors)),
    }
}

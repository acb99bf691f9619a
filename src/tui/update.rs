//! `update`: the only place the state changes. Pure but for the effects it returns; the loop
//! (or a test) runs those and feeds their answers back as actions.

use std::time::Duration;

use chrono::{Datelike, Duration as Days, Months, NaiveDate};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui_textarea::TextArea;

use crate::api::{BookRequest, BookingStatus, Role};
use crate::client::ApiClient;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::tui::action::{Action, Effect};
use crate::tui::keymap::{COMMANDS, Cmd};
use crate::tui::state::{
    App, BookingsPane, CalendarPane, DayRow, DoctorStep, DoctorsPane, LedgerView, LoginField,
    LoginForm, MailboxPane, OtpPane, Pane, PatientPicker, Pending, Popup, RecoverForm,
    RegisterField, RegisterForm, ReportsPane, Screen, Session, field_text, text_field,
};

mod bookings;
mod calendar;
mod command;
mod doctors;
pub mod emergency;
mod fields;
mod login;
mod mailbox;
mod password;
mod popup;
mod totp;
mod vault;
use crate::tui::action::Job;
pub use bookings::status_word;
use bookings::*;
use calendar::*;
use command::command;
use doctors::*;
pub use fields::complete_path;
use fields::*;
use login::*;
use mailbox::*;
use popup::*;
pub use popup::{palette_default, palette_matches};
use vault::{
    code_key, grants_key, load_entries, load_otp, load_reports, on_vault, path_key, report_command,
    upload_picker_key, vault,
};

pub const SEARCH_DEBOUNCE: Duration = Duration::from_millis(200);

pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    let before = (app.status.error.clone(), app.status.info.clone());
    apply(app, action, &mut fx);
    record_messages(app, before);
    if !fx.is_empty() {
        app.dirty = true;
    }
    fx
}

/// New messages go to the history (`:messages`), once each.
fn record_messages(app: &mut App, before: (Option<String>, Option<String>)) {
    if app.session.is_none() {
        return;
    }
    let now = app.clock.now;
    for (error, old, new) in [
        (true, before.0, app.status.error.clone()),
        (false, before.1, app.status.info.clone()),
    ] {
        if let Some(text) = new
            && old.as_ref() != Some(&text)
        {
            let h = &mut app.status.history;
            h.push(crate::tui::state::Message {
                at: now,
                error,
                text,
            });
            if h.len() > crate::tui::state::MESSAGES_KEPT {
                h.remove(0);
            }
        }
    }
}

fn apply(app: &mut App, action: Action, fx: &mut Vec<Effect>) {
    // Every answer from outside changes what is shown; keys decide for themselves.
    if !matches!(
        action,
        Action::Key(_) | Action::Paste(_) | Action::SearchDue { .. } | Action::PatientsDue { .. }
    ) {
        app.dirty = true;
    }
    match action {
        Action::Key(k) => {
            if k.kind != KeyEventKind::Release {
                on_key(app, k, fx);
            }
        }
        Action::Paste(text) => paste(app, text, fx),
        Action::Resize | Action::Redraw => app.dirty = true,
        Action::IdleLock => {
            if app.session.is_some() {
                wipe(app, true, fx);
            }
        }
        Action::Terminate => app.quit = true,
        Action::SessionEnded(why) => {
            if app.session.is_some() {
                wipe(app, true, fx);
                app.login.message = Some(format!(
                    "The server ended the session ({why}): log in again."
                ));
            }
        }
        Action::ServerReady { url, client } => {
            app.server.url = url;
            app.client_template = Some(client);
            app.dirty = true;
        }
        Action::ServerFailed(e) => {
            app.status.error = Some(e);
            app.dirty = true;
        }
        Action::Seed(p) => seed_progress(app, p, fx),
        Action::LoggedIn(r) => logged_in(app, r, fx),
        Action::LegacySaltAsked => login::legacy_salt_asked(app),
        Action::TotpNeeded(s) => totp::totp_needed(app, s),
        Action::TotpLoggedIn(r) => totp::totp_logged_in(app, r, fx),
        Action::TotpEnrolStarted(r) => totp::enrol_started(app, r),
        Action::TotpConfirmed(r) => totp::confirmed(app, r),
        Action::CodeMailed(r) => code_mailed(app, r),
        Action::Registered(r) => registered(app, r),
        Action::PasswordChanged(r) => {
            done(app);
            match r {
                Ok(()) => {
                    tracing::info!("password changed");
                    app.status.error = None;
                    app.status.info = Some(
                        "Password changed. Your keys are the same; other sessions were ended."
                            .into(),
                    );
                }
                Err(e) => app.status.error = Some(format!("The password was not changed: {e}")),
            }
        }
        Action::KitMade(r) => {
            done(app);
            // The popup cannot be closed while the kit is made; should another popup have
            // replaced it, a new code still wins: the old one no longer works.
            let mut p = match app.popup.take() {
                Some(Popup::RecoveryKit(p)) => p,
                other if r.is_err() => {
                    app.popup = other;
                    if let Err(e) = r {
                        app.status.error = Some(format!("No new recovery kit: {e}"));
                    }
                    return;
                }
                _ => Box::default(),
            };
            p.busy = false;
            match r {
                Ok(code) => {
                    tracing::info!("recovery kit made");
                    p.code = Some(code);
                    p.message = None;
                }
                Err(e) => p.message = Some(format!("No new recovery kit: {e}")),
            }
            app.popup = Some(Popup::RecoveryKit(p));
        }
        Action::SearchDue { id } => {
            if id == app.doctors.request_id {
                search_doctors(app, fx);
            }
        }
        Action::DoctorsLoaded { id, result } => doctors_loaded(app, id, result),
        Action::CalendarLoaded { id, result } => calendar_loaded(app, id, result),
        Action::BookingsLoaded { id, result } => bookings_loaded(app, id, result),
        Action::PatientsDue { id } => {
            if let (Some(Popup::PickPatient(p)), Some(client)) = (&app.popup, client(app))
                && p.request_id == id
            {
                let query = field_text(&p.query);
                net(app, fx, Effect::SearchPatients { client, id, query });
            }
        }
        Action::PatientsLoaded { id, result } => {
            done(app);
            if let Some(Popup::PickPatient(p)) = &mut app.popup
                && p.request_id == id
            {
                match result {
                    Ok(mut r) => {
                        // The server also matches addresses ("pat" is in every
                        // "@patients.demo"): names first, addresses only once `@` is typed.
                        narrow_patients(&mut r, &field_text(&p.query));
                        p.results = r;
                        p.selected = 0;
                        p.error = None;
                    }
                    Err(e) => p.error = Some(e),
                }
            }
        }
        Action::Booked(r) => booked(app, r, fx),
        Action::BookingChanged(r) => booking_changed(app, r, fx),
        Action::Vault {
            epoch,
            ledger,
            done: d,
        } => {
            if epoch == app.epoch && app.session.is_some() {
                done(app);
                on_vault(app, ledger, d, fx);
            }
        }
        Action::TransferProgress { id, done, total } => {
            if let Some(t) = &mut app.transfer
                && t.id == id
            {
                t.done = done;
                t.total = total;
                t.meter.record(app.clock.now, done);
            }
        }
        Action::MailboxLoaded(r) => mailbox_loaded(app, r),
        Action::KeyRotated {
            epoch,
            ledger,
            rotated,
        } => {
            if epoch == app.epoch && app.session.is_some() {
                done(app);
                on_vault(app, ledger, None, fx);
                app.popup = Some(Popup::KeyRotated(rotated));
            }
        }
    }
}

fn client(app: &App) -> Option<ApiClient> {
    app.session.as_ref().map(|s| s.client.clone())
}

/// Queues a network effect and counts it as in flight.
fn net(app: &mut App, fx: &mut Vec<Effect>, e: Effect) {
    app.status.busy += 1;
    fx.push(e);
}

fn done(app: &mut App) {
    app.status.busy = app.status.busy.saturating_sub(1);
    app.dirty = true;
}

/// Drops the session (its secret keys zeroize on drop) and every decrypted or private datum.
fn wipe(app: &mut App, lock: bool, fx: &mut Vec<Effect>) {
    if let Some(s) = &app.session {
        tracing::info!(user = %s.user.id, lock, "session closed, state wiped");
    }
    let email = app.session.as_ref().map(|s| s.user.email.clone());
    // Help is a page over a pane: return to that pane.
    let pane = if app.pane == Pane::Help {
        app.help_for
    } else {
        app.pane
    };
    if let Some(s) = app.session.take() {
        fx.push(Effect::Logout { client: s.client });
    }
    app.doctors = DoctorsPane::default();
    app.calendar = CalendarPane::default();
    app.bookings = BookingsPane::default();
    app.mailbox = MailboxPane::default();
    // Decrypted titles, codes, the entries about the user: all go with the keys.
    app.reports = ReportsPane::default();
    app.otp = OtpPane::default();
    app.ledger = LedgerView::default();
    if let Some(t) = app.transfer.take() {
        t.cancel.store(true, Ordering::Relaxed);
    }
    app.epoch += 1;
    app.register = RegisterForm::default();
    // A pending TOTP login holds the password's master key: it goes too.
    app.totp = Default::default();
    app.popup = None;
    app.status.info = None;
    app.status.error = None;
    app.status.busy = 0;
    app.status.history.clear();
    app.help_scroll = 0;
    app.pane = Pane::Doctors;
    app.login = LoginForm::default();
    if lock && let Some(email) = email {
        app.login.email.insert_str(&email);
        app.login.locked = Some(email);
        app.login.focus = LoginField::Password;
        app.login.return_to = Some(pane);
        app.login.message = Some(format!(
            "Locked after {} idle minute{}: keys and data wiped.",
            app.idle_lock_minutes,
            if app.idle_lock_minutes == 1 { "" } else { "s" }
        ));
    }
    app.screen = Screen::Login;
    app.dirty = true;
}

fn on_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    if ctrl(&k, 'c') {
        app.quit = true;
        return;
    }
    if ctrl(&k, 'l') {
        app.dirty = true;
        return;
    }
    if app.too_small {
        // Nothing but the notice is drawn: a key must not act on what cannot be seen.
        // `q` still quits when nothing runs (else Ctrl-C, which says so on the notice).
        if !app.text_focus()
            && app.popup.is_none()
            && app.status.busy == 0
            && app.keys.resolve(&k) == Some(Cmd::Quit)
        {
            app.quit = true;
        }
        return;
    }
    match app.screen {
        Screen::Login => login_key(app, k, fx),
        Screen::Register => register_key(app, k, fx),
        Screen::Recover => recover_key(app, k, fx),
        Screen::Mailbox => mailbox_screen_key(app, k, fx),
        Screen::Totp => totp::totp_key(app, k, fx),
        Screen::Main => {
            if app.status.info.take().is_some() {
                app.dirty = true;
            }
            if app.popup.is_some() {
                popup_key(app, k, fx);
            } else if app.pane == Pane::Doctors && app.doctors.editing {
                search_key(app, k, fx);
            } else if app.pane == Pane::Otp && app.otp.editing {
                code_key(app, k, fx);
            } else if app.list_filter().is_some_and(|f| f.focused) {
                filter_key(app, k);
            } else if starts_search(app, &k) {
                app.doctors.editing = true;
                if type_into(&mut app.doctors.query, k) {
                    after_edit(app, fx);
                }
                app.dirty = true;
            } else if app.pane == Pane::Help && help_closes(app, &k) {
                // Help is a page over the pane it was opened from: these keys go back.
                let back = app.help_for;
                switch_pane(app, back, fx);
            } else if let Some(cmd) = app.keys.resolve(&k) {
                command(app, cmd, fx);
            }
        }
    }
}

/// Keys that close Help: Esc, Enter, `?` (help again), `q` and Tab (as in a pager).
fn help_closes(app: &App, k: &KeyEvent) -> bool {
    is(k, KeyCode::Enter)
        || matches!(
            app.keys.resolve(k),
            Some(Cmd::Back | Cmd::Help | Cmd::Quit | Cmd::NextPane | Cmd::PrevPane)
        )
}

fn switch_pane(app: &mut App, pane: Pane, fx: &mut Vec<Effect>) {
    if !app.panes().contains(&pane) {
        return;
    }
    if pane == Pane::Help && app.pane != Pane::Help {
        app.help_for = app.pane;
        app.help_scroll = 0;
    }
    // A message belongs to the pane that caused it.
    if pane != app.pane {
        app.status.error = None;
    }
    // One patient's reports are a detour: leaving Reports (not for Help) ends it.
    if app.pane == Pane::Reports && pane != Pane::Help && app.reports.patient.take().is_some() {
        app.reports.rows.clear();
    }
    // So is one report's trail: leaving the Ledger (not for Help) ends it.
    if app.pane == Pane::Ledger && pane != Pane::Help && app.ledger.trail.take().is_some() {
        app.ledger.selected = 0;
    }
    app.pane = pane;
    app.dirty = true;
    if pane == Pane::Mailbox && app.mailbox.all.is_empty() && !app.mailbox.loading {
        load_mailbox(app, fx);
    }
    if pane == Pane::Reports && app.reports.rows.is_empty() && !app.reports.loading {
        load_reports(app, fx);
    }
    if pane == Pane::Otp && !app.otp.loading {
        load_otp(app, fx);
    }
    // Sync on entering the Ledger pane.
    if pane == Pane::Ledger && !app.ledger.entries_loading {
        load_entries(app, fx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Booking, UserInfo};
    use crate::tui::keymap::KeyMap;
    use crate::tui::state::{Clock, DoctorRow, ServerInfo};
    use crate::tui::theme::Theme;

    fn app(role: Role) -> App {
        let mut a = App::new(
            Clock::fixed(chrono::DateTime::UNIX_EPOCH),
            Theme::mono(),
            KeyMap::default(),
            ServerInfo {
                url: "http://127.0.0.1:1".into(),
                demo: true,
                data_dir: None,
            },
        );
        a.session = Some(Session {
            user: UserInfo {
                id: uuid::Uuid::nil(),
                email: "u@x.test".into(),
                name: "U".into(),
                role,
                active: true,
            },
            client: ApiClient::new(
                "http://127.0.0.1:1",
                false,
                crate::seal::KdfParams::default(),
            )
            .expect("client"),
            keys: None,
        });
        a.screen = Screen::Main;
        a
    }

    fn key(a: &mut App, c: KeyCode) -> Vec<Effect> {
        update(a, Action::Key(KeyEvent::new(c, KeyModifiers::NONE)))
    }

    #[test]
    fn digits_switch_panes_but_type_into_a_focused_field() {
        let mut a = app(Role::Patient);
        key(&mut a, KeyCode::Char('3'));
        assert_eq!(a.pane, Pane::Bookings);
        key(&mut a, KeyCode::Char('1'));
        assert_eq!(a.pane, Pane::Doctors);
        key(&mut a, KeyCode::Char('/'));
        let fx = key(&mut a, KeyCode::Char('3'));
        assert_eq!(a.pane, Pane::Doctors, "a digit in the search field is text");
        assert_eq!(field_text(&a.doctors.query), "3");
        assert!(
            matches!(fx.as_slice(), [Effect::Later { after, .. }] if *after == SEARCH_DEBOUNCE)
        );
        key(&mut a, KeyCode::Char('q'));
        assert!(!a.quit, "q is text while typing");
        key(&mut a, KeyCode::Esc);
        assert_eq!(
            field_text(&a.doctors.query),
            "3q",
            "Esc leaves the field, keeps the text"
        );
        key(&mut a, KeyCode::Char('q'));
        assert!(a.quit);
    }

    #[test]
    fn stale_search_answers_are_dropped() {
        let mut a = app(Role::Patient);
        key(&mut a, KeyCode::Char('/'));
        key(&mut a, KeyCode::Char('c'));
        key(&mut a, KeyCode::Char('a'));
        let latest = a.doctors.request_id;
        let row = |name: &str| DoctorRow {
            doctor: crate::api::Doctor {
                id: uuid::Uuid::new_v4(),
                name: name.into(),
                specialty: "Cardiology".into(),
                bio: String::new(),
                public_keys: crate::seal::PublicKeys {
                    x25519: [1; 32],
                    ed25519: [2; 32],
                },
            },
            next_free: None,
        };
        update(
            &mut a,
            Action::DoctorsLoaded {
                id: latest - 1,
                result: Ok((vec![row("Old")], None)),
            },
        );
        assert!(a.doctors.rows.is_empty(), "an older answer is ignored");
        assert!(
            update(&mut a, Action::SearchDue { id: latest - 1 }).is_empty(),
            "an older debounce does nothing"
        );
        assert_eq!(update(&mut a, Action::SearchDue { id: latest }).len(), 1);
        update(
            &mut a,
            Action::DoctorsLoaded {
                id: latest,
                result: Ok((vec![row("New")], None)),
            },
        );
        assert_eq!(a.doctors.rows[0].doctor.name, "New");
        assert!(!a.doctors.loading);
    }

    #[test]
    fn esc_closes_a_confirmation_without_changing_anything() {
        let mut a = app(Role::Patient);
        let b = Booking {
            id: uuid::Uuid::new_v4(),
            doctor_id: uuid::Uuid::new_v4(),
            doctor_name: "D".into(),
            patient_id: uuid::Uuid::nil(),
            patient_name: "P".into(),
            start: chrono::DateTime::UNIX_EPOCH,
            end: chrono::DateTime::UNIX_EPOCH,
            status: BookingStatus::Booked,
        };
        a.bookings.items = vec![b];
        key(&mut a, KeyCode::Char('3'));
        assert!(key(&mut a, KeyCode::Char('c')).is_empty());
        assert!(matches!(a.popup, Some(Popup::Confirm(_))));
        assert!(
            key(&mut a, KeyCode::Char('x')).is_empty(),
            "other keys wait"
        );
        assert!(key(&mut a, KeyCode::Esc).is_empty());
        assert!(a.popup.is_none());
        key(&mut a, KeyCode::Char('c'));
        let fx = key(&mut a, KeyCode::Char('y'));
        assert!(matches!(
            fx.as_slice(),
            [Effect::Transition {
                action: "cancel",
                ..
            }]
        ));
        assert_eq!(a.status.busy, 1);
        // Quitting while a request runs asks first.
        key(&mut a, KeyCode::Char('q'));
        assert!(!a.quit && matches!(a.popup, Some(Popup::ConfirmQuit)));
        key(&mut a, KeyCode::Esc);
        assert!(!a.quit);
    }

    #[test]
    fn panes_and_tab_order_follow_the_role() {
        let mut a = app(Role::Doctor);
        let mut seen = vec![a.pane];
        for _ in 0..8 {
            key(&mut a, KeyCode::Tab);
            seen.push(a.pane);
        }
        assert_eq!(
            seen,
            [
                Pane::Doctors,
                Pane::Calendar,
                Pane::Bookings,
                Pane::Reports,
                Pane::Otp,
                Pane::Ledger,
                Pane::Mailbox,
                Pane::Help,
                // Tab in Help goes back to the pane it was opened from (#14).
                Pane::Mailbox
            ]
        );
        update(
            &mut a,
            Action::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
        );
        assert_eq!(a.pane, Pane::Ledger);
        let mut admin = app(Role::Admin);
        admin.server.demo = false;
        assert_eq!(admin.panes(), [Pane::Doctors, Pane::Ledger, Pane::Help]);
        key(&mut admin, KeyCode::Char('3'));
        assert_eq!(
            admin.pane,
            Pane::Doctors,
            "a pane the role lacks stays shut"
        );
    }

    #[test]
    fn the_lock_wipes_titles_codes_entries_and_stops_the_transfer() {
        use crate::tui::state::{Check, LedgerLine, ReportRow, Transfer, TransferKind};
        let mut a = app(Role::Patient);
        a.reports.rows = vec![ReportRow {
            summary: crate::api::ReportSummary {
                id: uuid::Uuid::nil(),
                author_id: uuid::Uuid::nil(),
                author_name: "D".into(),
                patient_id: uuid::Uuid::nil(),
                patient_name: "P".into(),
                created_at: chrono::DateTime::UNIX_EPOCH,
                plaintext_len: 1,
                n_chunks: 1,
                status: "released".into(),
                readable: true,
            },
            check: Check::Verified {
                title: "Secret title".into(),
            },
        }];
        a.ledger.entries = vec![LedgerLine {
            index: 1,
            time_ms: 0,
            text: "code entered by you".into(),
            ..Default::default()
        }];
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        a.transfer = Some(Transfer {
            id: 1,
            kind: TransferKind::Download,
            label: "Secret title".into(),
            done: 0,
            total: 1,
            started: chrono::DateTime::UNIX_EPOCH,
            cancel: cancel.clone(),
            meter: Default::default(),
        });
        let epoch = a.epoch;
        update(&mut a, Action::IdleLock);
        assert!(a.reports.rows.is_empty() && a.ledger.entries.is_empty());
        assert!(a.transfer.is_none() && cancel.load(Ordering::Relaxed));
        assert!(a.epoch > epoch, "answers for the old session are dropped");
        // A late answer of the locked session changes nothing.
        update(
            &mut a,
            Action::Vault {
                epoch,
                ledger: None,
                done: Some(crate::tui::action::Done::Entries(Ok(vec![LedgerLine {
                    index: 2,
                    time_ms: 0,
                    text: "late".into(),
                    ..Default::default()
                }]))),
            },
        );
        assert!(a.ledger.entries.is_empty());
    }

    #[test]
    fn logout_and_lock_wipe_the_session() {
        let mut a = app(Role::Patient);
        a.status.info = Some("x".into());
        let fx = update(&mut a, Action::IdleLock);
        assert!(matches!(fx.as_slice(), [Effect::Logout { .. }]));
        assert!(a.session.is_none());
        assert_eq!(a.login.locked.as_deref(), Some("u@x.test"));
        assert!(
            update(&mut a, Action::IdleLock).is_empty(),
            "locking twice is harmless"
        );
        let mut b = app(Role::Patient);
        key(&mut b, KeyCode::Char('L'));
        assert!(b.session.is_none() && b.login.locked.is_none());
    }
}

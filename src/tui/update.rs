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
mod doctors;
mod fields;
mod login;
mod mailbox;
mod password;
mod popup;
mod vault;
use crate::tui::action::Job;
pub use bookings::status_word;
use bookings::*;
use calendar::*;
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
        Action::Paste(text) => {
            if let Some(f) = focused_secret(app) {
                f.insert_str(&text);
                return;
            }
            let text: String = text.chars().filter(|c| !c.is_control()).collect();
            if let Some(t) = focused_field(app) {
                t.insert_str(text);
                app.dirty = true;
                after_edit(app, fx);
            }
        }
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
        Action::Seed(p) => {
            let ready = p.finished;
            let failed = p.error.clone();
            app.seed = Some(p);
            app.dirty = true;
            if app.login.waiting_for_seed && app.screen == Screen::Login {
                if ready {
                    app.login.waiting_for_seed = false;
                    submit_login(app, fx);
                } else if let Some(e) = failed {
                    app.login.waiting_for_seed = false;
                    app.login.message = Some(format!("The demo accounts could not be made: {e}"));
                } else {
                    app.login.message = Some(seed_wait_message(app));
                }
            }
        }
        Action::LoggedIn(r) => {
            done(app);
            app.login.busy = false;
            app.recover.busy = false;
            if let Err(e) = &r
                && app.screen == Screen::Recover
            {
                tracing::info!("recovery failed");
                app.recover.message = Some(e.clone());
                return;
            }
            let recovered = r.is_ok() && app.screen == Screen::Recover;
            if recovered {
                app.recover = Default::default();
            }
            match r {
                Ok(b) => {
                    let (client, logged) = *b;
                    let user = logged.login.user.clone();
                    // Ids and roles only: no names, addresses or codes in the log.
                    tracing::info!(user = %user.id, role = %user.role, "logged in");
                    let return_to = app.login.return_to.take();
                    app.login = LoginForm::default();
                    app.epoch += 1;
                    app.session = Some(Session {
                        user,
                        client,
                        keys: Some(Arc::new(logged)),
                    });
                    app.screen = Screen::Main;
                    app.status.error = None;
                    app.status.info = None;
                    after_login(app, fx);
                    if recovered {
                        app.status.info = Some(
                            "New password set; your keys are the same. Make a new recovery kit \
                             (K) if anyone may have seen the code."
                                .into(),
                        );
                    }
                    if let Some(p) = return_to.filter(|p| app.panes().contains(p)) {
                        app.pane = p;
                    }
                }
                Err(e) => {
                    tracing::info!("login failed");
                    app.login.message = Some(e);
                    // The password goes; the address stays for another try.
                    app.login.password.wipe();
                }
            }
        }
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
        Action::CodeMailed(r) => {
            done(app);
            app.register.busy = false;
            match r {
                Ok(v) => {
                    app.register.verification = Some(v);
                    app.register.focus = RegisterField::Code;
                    app.register.message = Some(if app.server.demo {
                        "A code was mailed. Demo: Ctrl-O opens the mailbox.".into()
                    } else {
                        "A code was mailed to that address: enter it below.".into()
                    });
                }
                Err(e) => app.register.message = Some(e),
            }
        }
        Action::Registered(r) => {
            done(app);
            app.register.busy = false;
            match r {
                Ok(email) => {
                    app.register = RegisterForm::default();
                    app.login = LoginForm::default();
                    app.login.email.insert_str(&email);
                    app.login.focus = LoginField::Password;
                    app.login.message = Some("Account made: log in with your password.".into());
                    app.screen = Screen::Login;
                }
                Err(e) => app.register.message = Some(e),
            }
        }
        Action::SearchDue { id } => {
            if id == app.doctors.request_id {
                search_doctors(app, fx);
            }
        }
        Action::DoctorsLoaded { id, result } => {
            done(app);
            if id == app.doctors.request_id {
                app.doctors.loading = false;
                match result {
                    Ok((rows, tz)) => {
                        if let Some(tz) = tz.and_then(|t| t.parse::<chrono_tz::Tz>().ok()) {
                            app.tz = tz;
                        }
                        app.doctors.rows = rows;
                        app.doctors.error = None;
                        app.doctors.selected = 0;
                    }
                    Err(e) => app.doctors.error = Some(e),
                }
            }
        }
        Action::CalendarLoaded { id, result } => {
            done(app);
            if id == app.calendar.request_id {
                app.calendar.loading = false;
                match result {
                    Ok(data) => {
                        if let Ok(tz) = data.timezone.parse::<chrono_tz::Tz>() {
                            app.tz = tz;
                        }
                        app.calendar.doctor = Some(data.doctor.clone());
                        app.calendar.data = Some(data);
                        app.calendar.error = None;
                        clamp_day_row(app);
                    }
                    Err(e) => app.calendar.error = Some(e),
                }
            }
        }
        Action::BookingsLoaded { id, result } => {
            done(app);
            if id == app.bookings.request_id {
                app.bookings.loading = false;
                match result {
                    Ok(items) => {
                        app.bookings.all = items;
                        app.bookings.error = None;
                        app.bookings.refilter(app.tz);
                    }
                    Err(e) => app.bookings.error = Some(e),
                }
            }
        }
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
        Action::Booked(r) => {
            done(app);
            match r {
                Ok(b) => {
                    app.status.info = Some(format!(
                        "Booked {} with {}",
                        app.local(b.start),
                        b.doctor_name
                    ));
                    app.status.error = None;
                    reload_after_change(app, fx);
                }
                Err(e) => app.status.error = Some(e),
            }
        }
        Action::BookingChanged(r) => {
            done(app);
            match r {
                Ok(b) => {
                    app.status.info = Some(format!(
                        "{} {}: now {}",
                        b.patient_name,
                        app.local(b.start),
                        status_word(b.status)
                    ));
                    app.status.error = None;
                    reload_after_change(app, fx);
                }
                Err(e) => app.status.error = Some(e),
            }
        }
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
            }
        }
        Action::MailboxLoaded(r) => {
            app.mailbox.loading = false;
            match r {
                Ok(items) => {
                    app.mailbox.items = items;
                    app.mailbox.error = None;
                    let n = app.mailbox.items.len();
                    app.mailbox.selected = app.mailbox.selected.min(n.saturating_sub(1));
                }
                Err(e) => app.mailbox.error = Some(e),
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
            } else if (app.pane == Pane::Bookings && app.bookings.filtering)
                || (app.pane == Pane::Reports && app.reports.filtering)
                || (app.pane == Pane::Ledger && app.ledger.filtering)
            {
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
    if pane == Pane::Mailbox && app.mailbox.items.is_empty() && !app.mailbox.loading {
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

fn command(app: &mut App, cmd: Cmd, fx: &mut Vec<Effect>) {
    let role = app.role();
    match cmd {
        Cmd::Quit => {
            if app.status.busy > 0 {
                app.popup = Some(Popup::ConfirmQuit);
            } else {
                app.quit = true;
            }
        }
        Cmd::Help => switch_pane(app, Pane::Help, fx),
        Cmd::Palette => app.popup = Some(Popup::palette()),
        Cmd::NextPane | Cmd::PrevPane => {
            let panes = app.panes();
            if panes.is_empty() {
                return;
            }
            let pos = panes.iter().position(|p| *p == app.pane).unwrap_or(0);
            let next = if cmd == Cmd::NextPane {
                (pos + 1) % panes.len()
            } else {
                (pos + panes.len() - 1) % panes.len()
            };
            switch_pane(app, panes[next], fx);
        }
        Cmd::Go(p) => switch_pane(app, p, fx),
        Cmd::Logout => wipe(app, false, fx),
        Cmd::Password => app.popup = Some(Popup::Password(Box::default())),
        Cmd::RecoveryKit => app.popup = Some(Popup::RecoveryKit(Box::default())),
        Cmd::Messages => app.popup = Some(Popup::Messages(0)),
        Cmd::Back => {
            if app.status.error.take().is_some() {
                // Esc dismisses the message first.
            } else if app.pane == Pane::Bookings && !field_text(&app.bookings.filter).is_empty() {
                app.bookings.filter = BookingsPane::default().filter;
                app.bookings.refilter(app.tz);
            } else if app.pane == Pane::Reports && !field_text(&app.reports.filter).is_empty() {
                app.reports.filter = text_field("");
                app.reports.selected = 0;
            } else if app.pane == Pane::Reports
                && app.transfer.is_none()
                && app.reports.patient.is_some()
            {
                // Back from one patient's reports to the full list.
                app.reports.patient = None;
                app.reports.rows.clear();
                load_reports(app, fx);
            } else if app.pane == Pane::Ledger && !field_text(&app.ledger.filter).is_empty() {
                app.ledger.filter = text_field("");
                app.ledger.selected = 0;
            } else if app.pane == Pane::Ledger && app.ledger.trail.take().is_some() {
                // Back from one report's trail to every entry.
                app.ledger.selected = 0;
            } else if app.pane == Pane::Calendar && app.calendar.in_day {
                app.calendar.in_day = false;
            } else if app.pane == Pane::Reports && app.transfer.is_some() {
                // Esc is never destructive: stopping a transfer asks first.
                app.popup = Some(Popup::Confirm(Pending::StopTransfer));
            } else {
                return;
            }
        }
        Cmd::Search => match app.pane {
            Pane::Doctors => app.doctors.editing = true,
            Pane::Bookings => app.bookings.filtering = true,
            Pane::Reports => {
                if field_text(&app.reports.filter).is_empty() {
                    app.reports.filter = text_field("date, doctor, patient, title or state");
                }
                app.reports.filtering = true;
            }
            Pane::Ledger => {
                if field_text(&app.ledger.filter).is_empty() {
                    app.ledger.filter = text_field("words in the entry");
                }
                app.ledger.filtering = true;
            }
            _ => return,
        },
        Cmd::NewBooking => {
            if app.pane != Pane::Bookings {
                return;
            }
            if role != Some(Role::Reception) {
                app.status.info =
                    Some("Book from a doctor's calendar: 1 Doctors, Enter on a doctor.".into());
            } else {
                open_patient_picker(app, None, fx);
            }
        }
        Cmd::Refresh => match app.pane {
            Pane::Doctors => {
                app.doctors.request_id += 1;
                search_doctors(app, fx);
            }
            Pane::Calendar => load_calendar(app, fx),
            Pane::Bookings => load_bookings(app, fx),
            Pane::Mailbox => load_mailbox(app, fx),
            Pane::Reports => load_reports(app, fx),
            Pane::Otp => load_otp(app, fx),
            Pane::Ledger => load_entries(app, fx),
            Pane::Help => return,
        },
        Cmd::Up | Cmd::Down | Cmd::PageUp | Cmd::PageDown => {
            let (up, by) = match cmd {
                Cmd::Up => (true, 1),
                Cmd::Down => (false, 1),
                Cmd::PageUp => (true, 10),
                _ => (false, 10),
            };
            let before = (
                app.doctors.selected,
                app.bookings.selected,
                app.mailbox.selected,
                app.help_scroll,
                app.calendar.row,
                app.calendar.selected,
                (app.reports.selected, app.otp.selected, app.ledger.selected),
            );
            match app.pane {
                Pane::Doctors => step(&mut app.doctors.selected, app.doctors.rows.len(), up, by),
                Pane::Bookings => {
                    step(&mut app.bookings.selected, app.bookings.items.len(), up, by)
                }
                // j/k pick a mail; PgDn/PgUp scroll its body.
                Pane::Mailbox if by > 1 => mailbox_scroll(app, up),
                Pane::Mailbox => {
                    step(&mut app.mailbox.selected, app.mailbox.items.len(), up, by);
                    app.mailbox.body_scroll = 0;
                }
                Pane::Reports => {
                    let n = app.reports.visible(app.tz).len();
                    step(&mut app.reports.selected, n, up, by)
                }
                Pane::Otp => step(&mut app.otp.selected, app.otp.items.len(), up, by),
                Pane::Ledger => {
                    let n = app.ledger.shown().len();
                    step(&mut app.ledger.selected, n, up, by)
                }
                Pane::Help => {
                    app.help_scroll = if up {
                        app.help_scroll.saturating_sub(by as u16)
                    } else {
                        app.help_scroll.saturating_add(by as u16).min(40)
                    }
                }
                Pane::Calendar => {
                    if app.calendar.in_day {
                        let n = app.day_rows().len();
                        step(&mut app.calendar.row, n, up, by);
                    } else {
                        let days = if by == 1 { 7 } else { 28 };
                        move_day(app, if up { -days } else { days }, fx);
                    }
                }
            }
            let after = (
                app.doctors.selected,
                app.bookings.selected,
                app.mailbox.selected,
                app.help_scroll,
                app.calendar.row,
                app.calendar.selected,
                (app.reports.selected, app.otp.selected, app.ledger.selected),
            );
            if before == after {
                return;
            }
        }
        Cmd::Left | Cmd::Right => {
            if app.pane != Pane::Calendar {
                return;
            }
            app.calendar.in_day = false;
            move_day(app, if cmd == Cmd::Left { -1 } else { 1 }, fx);
        }
        Cmd::PrevMonth | Cmd::NextMonth => {
            if app.pane != Pane::Calendar {
                return;
            }
            let d = app.calendar.selected.unwrap_or(app.clock.today);
            let to = if cmd == Cmd::NextMonth {
                d.checked_add_months(Months::new(1))
            } else {
                d.checked_sub_months(Months::new(1))
            };
            if let Some(to) = to {
                set_day(app, to, fx);
            }
        }
        Cmd::Select => match app.pane {
            Pane::Doctors => {
                let Some(row) = app.doctors.rows.get(app.doctors.selected) else {
                    return;
                };
                if !app.panes().contains(&Pane::Calendar) {
                    app.status.info =
                        Some("Calendars are for patients, reception and doctors.".into());
                    return;
                }
                let doctor = row.doctor.clone();
                let first = row
                    .next_free
                    .as_ref()
                    .map(|s| s.start.with_timezone(&app.tz).date_naive())
                    .unwrap_or(app.clock.today);
                app.calendar = CalendarPane {
                    doctor: Some(doctor.clone()),
                    selected: Some(first),
                    ..CalendarPane::default()
                };
                app.pane = Pane::Calendar;
                load_calendar_for(app, doctor.id, fx);
            }
            Pane::Calendar => {
                if !app.calendar.in_day {
                    if app.day_rows().is_empty() {
                        app.status.info = Some("No free slot or booking that day.".into());
                    } else {
                        app.calendar.in_day = true;
                        app.calendar.row = 0;
                    }
                } else {
                    let rows = app.day_rows();
                    match rows.get(app.calendar.row) {
                        Some(DayRow::Free(slot)) => book(app, slot.clone(), fx),
                        Some(DayRow::Booked(_)) => {
                            // Only what this role may do to a booking.
                            let mut acts = vec![(Cmd::CancelBooking, "cancel")];
                            match role {
                                Some(Role::Reception) => acts.push((Cmd::CheckIn, "check in")),
                                Some(Role::Doctor) => acts = vec![(Cmd::Complete, "complete")],
                                _ => {}
                            }
                            app.status.info = Some(
                                acts.iter()
                                    .map(|(c, w)| format!("{} {w}", app.keys.first_key(*c)))
                                    .collect::<Vec<_>>()
                                    .join(" · "),
                            )
                        }
                        None => return,
                    }
                }
            }
            Pane::Reports => report_command(app, Cmd::Open, fx),
            Pane::Otp => report_command(app, Cmd::EnterCode, fx),
            _ => return,
        },
        Cmd::CancelBooking if app.pane == Pane::Reports => {
            if app.transfer.is_some() {
                app.popup = Some(Popup::Confirm(Pending::StopTransfer));
            } else {
                app.status.info = Some("No transfer is running.".into());
            }
        }
        Cmd::Upload
        | Cmd::Download
        | Cmd::Verify
        | Cmd::Open
        | Cmd::AskConsent
        | Cmd::Grants
        | Cmd::Trail
        | Cmd::PatientReports
        | Cmd::EnterCode
        | Cmd::Resend => report_command(app, cmd, fx),
        Cmd::CancelBooking | Cmd::CheckIn | Cmd::Complete => {
            let booking = match app.pane {
                Pane::Bookings => app.bookings.items.get(app.bookings.selected).cloned(),
                Pane::Calendar if app.calendar.in_day => match app.day_rows().get(app.calendar.row)
                {
                    Some(DayRow::Booked(b)) => Some(b.clone()),
                    _ => None,
                },
                _ => return,
            };
            let Some(booking) = booking else {
                app.status.info = Some("Select a booking first.".into());
                app.dirty = true;
                return;
            };
            let (action, who, from) = match cmd {
                Cmd::CancelBooking => ("cancel", None, BookingStatus::Booked),
                Cmd::CheckIn => ("check-in", Some(Role::Reception), BookingStatus::Booked),
                _ => ("complete", Some(Role::Doctor), BookingStatus::CheckedIn),
            };
            if let Some(who) = who
                && role != Some(who)
            {
                app.status.error = Some(format!("Only {who} staff can {action} a visit."));
            } else if booking.status != from {
                app.status.error = Some(format!(
                    "This booking is {}: it cannot be {}.",
                    status_word(booking.status),
                    match action {
                        "cancel" => "cancelled",
                        "check-in" => "checked in",
                        _ => "completed",
                    }
                ));
            } else {
                app.popup = Some(Popup::Confirm(Pending::Transition { booking, action }));
            }
        }
    }
    app.dirty = true;
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

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
    LoginForm, MailboxPane, OtpPane, Pane, PatientPicker, Pending, Popup, RegisterField,
    RegisterForm, ReportsPane, Screen, Session, field_text, text_field,
};

mod vault;
use crate::tui::action::Job;
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

pub fn status_word(s: BookingStatus) -> &'static str {
    match s {
        BookingStatus::Booked => "booked",
        BookingStatus::CheckedIn => "checked in",
        BookingStatus::Completed => "completed",
        BookingStatus::Cancelled => "cancelled",
        BookingStatus::NoShow => "no-show",
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

fn after_login(app: &mut App, fx: &mut Vec<Effect>) {
    let panes = app.panes();
    let role = app.role();
    app.pane = panes.first().copied().unwrap_or(Pane::Help);
    if role == Some(Role::Doctor) {
        app.pane = Pane::Calendar;
        if let Some(s) = &app.session {
            let me = s.user.id;
            app.calendar.selected = Some(app.clock.today);
            load_calendar_for(app, me, fx);
        }
    }
    if panes.contains(&Pane::Doctors) {
        search_doctors(app, fx);
    }
    if panes.contains(&Pane::Bookings) {
        load_bookings(app, fx);
    }
    if panes.contains(&Pane::Reports) {
        load_reports(app, fx);
    }
    if panes.contains(&Pane::Otp) {
        load_otp(app, fx);
    }
    // Without Reports nothing else syncs the ledger: its state belongs in the status bar.
    if !panes.contains(&Pane::Reports) {
        load_entries(app, fx);
    }
}

fn search_doctors(app: &mut App, fx: &mut Vec<Effect>) {
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

fn load_bookings(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(client) = client(app) else { return };
    app.bookings.request_id += 1;
    app.bookings.loading = true;
    let id = app.bookings.request_id;
    let from = app.clock.today - Days::days(30);
    let to = app.clock.today + Days::days(90);
    net(
        app,
        fx,
        Effect::LoadBookings {
            client,
            id,
            from,
            to,
        },
    );
}

fn load_calendar(app: &mut App, fx: &mut Vec<Effect>) {
    if let Some(d) = app.calendar.doctor.as_ref().map(|d| d.id) {
        load_calendar_for(app, d, fx);
    }
}

fn load_calendar_for(app: &mut App, doctor: uuid::Uuid, fx: &mut Vec<Effect>) {
    let Some(client) = client(app) else { return };
    app.calendar.request_id += 1;
    app.calendar.loading = true;
    let id = app.calendar.request_id;
    let month = app.calendar.month_start(app.clock.today);
    let today = app.clock.today;
    let with_availability = app.role() != Some(Role::Patient);
    net(
        app,
        fx,
        Effect::LoadCalendar {
            client,
            id,
            doctor,
            month,
            today,
            with_availability,
        },
    );
}

fn load_mailbox(app: &mut App, fx: &mut Vec<Effect>) {
    if let Some(dir) = app.server.data_dir.clone() {
        app.mailbox.loading = true;
        fx.push(Effect::LoadMailbox {
            dir: dir.join("outbox"),
        });
    }
}

/// A booking changed: every list that shows it or the slot it took (Doctors' "next free").
fn reload_after_change(app: &mut App, fx: &mut Vec<Effect>) {
    load_calendar(app, fx);
    load_bookings(app, fx);
    if app.panes().contains(&Pane::Doctors) {
        app.doctors.request_id += 1;
        search_doctors(app, fx);
    }
    if app.server.demo {
        load_mailbox(app, fx);
    }
}

fn clamp_day_row(app: &mut App) {
    let n = app.day_rows().len();
    app.calendar.row = app.calendar.row.min(n.saturating_sub(1));
    if n == 0 {
        app.calendar.in_day = false;
    }
}

/// The text field that has the keys, if any.
fn focused_field(app: &mut App) -> Option<&mut TextArea<'static>> {
    match app.screen {
        Screen::Login => match app.login.focus {
            LoginField::Email if app.login.locked.is_none() => Some(&mut app.login.email),
            // Password fields are `SecretField`s: see `focused_secret`.
            _ => None,
        },
        Screen::Register => Some(match app.register.focus {
            RegisterField::Email => &mut app.register.email,
            RegisterField::Name => &mut app.register.name,
            RegisterField::Phone => &mut app.register.phone,
            RegisterField::Password | RegisterField::Confirm => return None,
            RegisterField::Code => &mut app.register.code,
        }),
        Screen::Mailbox => None,
        Screen::Main => match &mut app.popup {
            Some(Popup::PickPatient(p)) => Some(&mut p.query),
            Some(Popup::PickDoctor(_)) => Some(&mut app.doctors.query),
            Some(Popup::Palette(p)) => Some(&mut p.input),
            Some(Popup::Path(p)) => Some(&mut p.input),
            Some(_) => None,
            None if app.pane == Pane::Doctors && app.doctors.editing => {
                Some(&mut app.doctors.query)
            }
            None if app.pane == Pane::Otp && app.otp.editing => Some(&mut app.otp.code),
            None if app.pane == Pane::Bookings && app.bookings.filtering => {
                Some(&mut app.bookings.filter)
            }
            None => None,
        },
    }
}

/// The password field that has the keys, if any.
fn focused_secret(app: &mut App) -> Option<&mut crate::tui::secret::SecretField> {
    match (app.screen, app.login.focus, app.register.focus) {
        (Screen::Login, LoginField::Password, _) => Some(&mut app.login.password),
        (Screen::Register, _, RegisterField::Password) => Some(&mut app.register.password),
        (Screen::Register, _, RegisterField::Confirm) => Some(&mut app.register.confirm),
        _ => None,
    }
}

/// Tab/Down and S-Tab/Up move the focus through a form's fields, round; `None` for other keys.
fn cycle_focus<T: Copy + PartialEq>(order: &[T], now: T, k: &KeyEvent) -> Option<T> {
    let pos = order.iter().position(|f| *f == now).unwrap_or(0);
    let n = order.len();
    if is(k, KeyCode::Tab) || is(k, KeyCode::Down) {
        Some(order[(pos + 1) % n])
    } else if k.code == KeyCode::BackTab || is(k, KeyCode::Up) {
        Some(order[(pos + n - 1) % n])
    } else {
        None
    }
}

/// After a text edit: searches are debounced, each edit with a new id.
fn after_edit(app: &mut App, fx: &mut Vec<Effect>) {
    if app.screen != Screen::Main {
        return;
    }
    match &mut app.popup {
        Some(Popup::PickPatient(p)) => {
            p.request_id += 1;
            fx.push(Effect::Later {
                after: SEARCH_DEBOUNCE,
                action: Box::new(Action::PatientsDue { id: p.request_id }),
            });
        }
        Some(Popup::Palette(p)) => p.selected = palette_default(&field_text(&p.input)),
        Some(Popup::PickDoctor(_)) => doctors_debounce(app, fx),
        Some(_) => {}
        None => {
            if app.pane == Pane::Bookings && app.bookings.filtering {
                app.bookings.refilter(app.tz);
            }
            if app.pane == Pane::Doctors && app.doctors.editing {
                app.doctors.request_id += 1;
                app.doctors.loading = true;
                fx.push(Effect::Later {
                    after: SEARCH_DEBOUNCE,
                    action: Box::new(Action::SearchDue {
                        id: app.doctors.request_id,
                    }),
                });
            }
        }
    }
}

fn is(k: &KeyEvent, code: KeyCode) -> bool {
    k.code == code && !k.modifiers.contains(KeyModifiers::CONTROL)
}

fn ctrl(k: &KeyEvent, c: char) -> bool {
    k.code == KeyCode::Char(c) && k.modifiers.contains(KeyModifiers::CONTROL)
}

/// Text input into `t`; true when the text changed.
fn type_into(t: &mut TextArea<'static>, k: KeyEvent) -> bool {
    // One-line fields: Enter and Tab never reach the text area.
    if matches!(k.code, KeyCode::Enter | KeyCode::Tab | KeyCode::BackTab) {
        return false;
    }
    // Readline keys, the same in every field (the text area's own Ctrl-U is undo).
    if k.modifiers.contains(KeyModifiers::CONTROL)
        && let KeyCode::Char(c) = k.code
    {
        use ratatui_textarea::CursorMove;
        return match c {
            'a' => {
                t.move_cursor(CursorMove::Head);
                false
            }
            'e' => {
                t.move_cursor(CursorMove::End);
                false
            }
            'u' => t.delete_line_by_head(),
            'w' => t.delete_word(),
            'k' => t.delete_line_by_end(),
            _ => false,
        };
    }
    let before = t.lines().to_vec();
    t.input(k);
    t.lines() != before.as_slice()
}

/// Tab in a path field: the longest completion of the last component that the folder
/// allows (a folder gets its `/`). `None` when nothing matches.
pub fn complete_path(text: &str) -> Option<String> {
    let (dir, prefix) = match text.rfind('/') {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text),
    };
    let base = if dir.is_empty() {
        std::path::PathBuf::from(".")
    } else {
        vault::expand_home(dir)
    };
    let mut names: Vec<(String, bool)> = std::fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_dir = e.file_type().ok()?.is_dir();
            (name.starts_with(prefix) && (prefix.starts_with('.') || !name.starts_with('.')))
                .then_some((name, is_dir))
        })
        .collect();
    names.sort();
    let first = names.first()?;
    let mut common = first.0.clone();
    for (n, _) in &names[1..] {
        while !n.starts_with(&common) {
            common.pop();
        }
    }
    let slash = if names.len() == 1 && first.1 { "/" } else { "" };
    Some(format!("{dir}{common}{slash}"))
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
            } else if app.pane == Pane::Bookings && app.bookings.filtering {
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

fn doctors_debounce(app: &mut App, fx: &mut Vec<Effect>) {
    app.doctors.request_id += 1;
    app.doctors.loading = true;
    fx.push(Effect::Later {
        after: SEARCH_DEBOUNCE,
        action: Box::new(Action::SearchDue {
            id: app.doctors.request_id,
        }),
    });
}

/// The `/` filter of Bookings: Esc or Enter leave the field and keep the filter.
fn filter_key(app: &mut App, k: KeyEvent) {
    if is(&k, KeyCode::Esc) || is(&k, KeyCode::Enter) {
        app.bookings.filtering = false;
    } else if is(&k, KeyCode::Up) {
        app.bookings.selected = app.bookings.selected.saturating_sub(1);
    } else if is(&k, KeyCode::Down) {
        move_down(&mut app.bookings.selected, app.bookings.items.len(), 1);
    } else if type_into(&mut app.bookings.filter, k) {
        app.bookings.refilter(app.tz);
    } else {
        return;
    }
    app.dirty = true;
}

/// In Doctors, a printable key that means nothing there starts the search with it (like
/// fzf). Keys of this pane and global ones (j, k, r, q, L, M, digits…) keep their meaning.
fn starts_search(app: &App, k: &KeyEvent) -> bool {
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

/// Keys that close Help: Esc, Enter, `?` (help again), `q` and Tab (as in a pager).
fn help_closes(app: &App, k: &KeyEvent) -> bool {
    is(k, KeyCode::Enter)
        || matches!(
            app.keys.resolve(k),
            Some(Cmd::Back | Cmd::Help | Cmd::Quit | Cmd::NextPane | Cmd::PrevPane)
        )
}

fn login_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    let order: &[LoginField] = if app.login.locked.is_some() {
        &[LoginField::Password]
    } else {
        &[
            LoginField::Email,
            LoginField::Password,
            LoginField::Register,
        ]
    };
    if ctrl(&k, 'o') && app.server.demo {
        open_mailbox_screen(app, fx);
        return;
    }
    if let Some(f) = cycle_focus(order, app.login.focus, &k) {
        app.login.focus = f;
    } else if is(&k, KeyCode::Esc) {
        app.login.message = None;
        app.login.waiting_for_seed = false;
    } else if is(&k, KeyCode::Enter) {
        match app.login.focus {
            LoginField::Email => app.login.focus = LoginField::Password,
            LoginField::Register => {
                app.screen = Screen::Register;
                app.register.message = None;
            }
            LoginField::Password => submit_login(app, fx),
        }
    } else if let Some(f) = focused_secret(app) {
        f.key(k);
    } else if let Some(t) = focused_field(app) {
        type_into(t, k);
    } else {
        return;
    }
    app.dirty = true;
}

fn submit_login(app: &mut App, fx: &mut Vec<Effect>) {
    if app.login.busy {
        return;
    }
    let Some(client) = app.client_template.clone() else {
        app.login.message = Some("The server is still starting: try again in a moment.".into());
        return;
    };
    let email = field_text(&app.login.email).trim().to_lowercase();
    if email.is_empty() || app.login.password.is_empty() {
        app.login.message = Some("Enter your email and password.".into());
        return;
    }
    // A demo account that is not made yet would say "wrong password": wait for it.
    if app.server.demo
        && app
            .seed
            .as_ref()
            .is_some_and(|p| !p.finished && p.error.is_none())
    {
        app.login.waiting_for_seed = true;
        app.login.message = Some(seed_wait_message(app));
        return;
    }
    // Out of the field, which is wiped: only the login effect holds it now.
    let password = app.login.password.take();
    app.login.busy = true;
    app.login.message = Some("Deriving keys and logging in…".into());
    net(
        app,
        fx,
        Effect::Login {
            client,
            email,
            password,
            settings: app.report_settings.clone(),
        },
    );
}

fn seed_wait_message(app: &App) -> String {
    let (done, total) = app
        .seed
        .as_ref()
        .map(|p| (p.done, p.total))
        .unwrap_or((0, 0));
    format!(
        "Demo accounts are still being prepared ({done}/{total}): logging in when ready (Esc stops)."
    )
}

fn register_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    let mut order = vec![
        RegisterField::Email,
        RegisterField::Name,
        RegisterField::Phone,
        RegisterField::Password,
        RegisterField::Confirm,
    ];
    if app.register.verification.is_some() {
        order.push(RegisterField::Code);
    }
    if ctrl(&k, 'o') && app.server.demo {
        open_mailbox_screen(app, fx);
        return;
    }
    if let Some(f) = cycle_focus(&order, app.register.focus, &k) {
        app.register.focus = f;
    } else if is(&k, KeyCode::Esc) {
        // Back to the login screen; what was typed stays.
        app.screen = Screen::Login;
    } else if is(&k, KeyCode::Enter) {
        submit_register(app, fx);
    } else if let Some(f) = focused_secret(app) {
        f.key(k);
    } else if let Some(t) = focused_field(app) {
        type_into(t, k);
    } else {
        return;
    }
    app.dirty = true;
}

fn submit_register(app: &mut App, fx: &mut Vec<Effect>) {
    if app.register.busy {
        return;
    }
    let Some(client) = app.client_template.clone() else {
        app.register.message = Some("The server is still starting: try again in a moment.".into());
        return;
    };
    let r = &app.register;
    let email = field_text(&r.email).trim().to_lowercase();
    let name = field_text(&r.name).trim().to_string();
    let phone = field_text(&r.phone).trim().to_string();
    if email.is_empty() || name.is_empty() || r.password.is_empty() {
        app.register.message = Some("Email, name and password are needed.".into());
        return;
    }
    if !r.password.same_as(&r.confirm) {
        app.register.message = Some("The two passwords differ: type the same one twice.".into());
        app.register.focus = RegisterField::Confirm;
        return;
    }
    let password = r.password.copy();
    if let Err(e) = crate::seal::check_password(&password, &[&email, &name]) {
        app.register.message = Some(e.to_string());
        return;
    }
    match app.register.verification.clone() {
        None => {
            app.register.busy = true;
            app.register.message = Some("Mailing a code…".into());
            net(app, fx, Effect::VerifyEmail { client, email });
        }
        Some(verification) => {
            let code = field_text(&app.register.code).trim().to_string();
            if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
                app.register.message = Some("The code is the 6 digits from the mail.".into());
                return;
            }
            app.register.busy = true;
            app.register.message = Some("Deriving keys and registering…".into());
            // Sent: the fields are wiped (a failed registration asks for it again).
            app.register.password.wipe();
            app.register.confirm.wipe();
            net(
                app,
                fx,
                Effect::RegisterPatient {
                    client,
                    verification,
                    code,
                    email,
                    name,
                    phone,
                    password,
                },
            );
        }
    }
}

fn open_mailbox_screen(app: &mut App, fx: &mut Vec<Effect>) {
    app.back_screen = app.screen;
    app.screen = Screen::Mailbox;
    load_mailbox(app, fx);
    app.dirty = true;
}

fn mailbox_screen_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    match app.keys.resolve(&k) {
        Some(Cmd::Back) | Some(Cmd::Quit) => app.screen = app.back_screen,
        Some(Cmd::Up) => app.mailbox.selected = app.mailbox.selected.saturating_sub(1),
        Some(Cmd::Down) => move_down(&mut app.mailbox.selected, app.mailbox.items.len(), 1),
        Some(Cmd::Refresh) => load_mailbox(app, fx),
        _ => return,
    }
    app.dirty = true;
}

fn search_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    if is(&k, KeyCode::Esc) || is(&k, KeyCode::Enter) {
        app.doctors.editing = false;
    } else if is(&k, KeyCode::Up) {
        app.doctors.selected = app.doctors.selected.saturating_sub(1);
    } else if is(&k, KeyCode::Down) {
        move_down(&mut app.doctors.selected, app.doctors.rows.len(), 1);
    } else if type_into(&mut app.doctors.query, k) {
        after_edit(app, fx);
    } else {
        return;
    }
    app.dirty = true;
}

fn move_down(sel: &mut usize, len: usize, by: usize) {
    *sel = (*sel + by).min(len.saturating_sub(1));
}

/// Lines a page key moves in the viewer (its body is about 16 lines at 80×24).
const VIEWER_PAGE: usize = 15;

fn popup_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    let Some(popup) = app.popup.take() else {
        return;
    };
    app.dirty = true;
    match popup {
        Popup::ConfirmQuit => {
            if is(&k, KeyCode::Char('y')) || is(&k, KeyCode::Enter) {
                app.quit = true;
            } else if !(is(&k, KeyCode::Char('n')) || is(&k, KeyCode::Esc)) {
                app.popup = Some(Popup::ConfirmQuit);
                app.dirty = false;
            }
        }
        Popup::Confirm(p) => {
            if is(&k, KeyCode::Char('y')) || is(&k, KeyCode::Enter) {
                confirm(app, p, fx);
            } else if !(is(&k, KeyCode::Char('n')) || is(&k, KeyCode::Esc)) {
                app.popup = Some(Popup::Confirm(p));
                app.dirty = false;
            }
        }
        Popup::PickPatient(mut p) => {
            if is(&k, KeyCode::Esc) {
                return;
            }
            if is(&k, KeyCode::Enter) {
                if p.choose_doctor
                    && let Some(pat) = p.results.get(p.selected)
                {
                    // Step 2 of `n`: the doctor, from the Doctors search (all at first).
                    app.popup = Some(Popup::PickDoctor(Box::new(DoctorStep {
                        patient: (pat.id, pat.name.clone()),
                    })));
                    app.doctors.query = DoctorsPane::default().query;
                    app.doctors.editing = false;
                    app.doctors.request_id += 1;
                    search_doctors(app, fx);
                } else if let Some(pat) = p.results.get(p.selected) {
                    app.popup = Some(Popup::Confirm(Pending::Book {
                        doctor_id: p.doctor_id,
                        doctor_name: p.doctor_name.clone(),
                        slot: p.slot.clone(),
                        patient: Some((pat.id, pat.name.clone())),
                    }));
                } else {
                    app.popup = Some(Popup::PickPatient(p));
                }
                return;
            }
            if is(&k, KeyCode::Up) {
                p.selected = p.selected.saturating_sub(1);
            } else if is(&k, KeyCode::Down) {
                move_down(&mut p.selected, p.results.len(), 1);
            } else if type_into(&mut p.query, k) {
                // Narrow what is shown at once: Enter before the answer picks a match.
                narrow_patients(&mut p.results, &field_text(&p.query));
                p.selected = p.selected.min(p.results.len().saturating_sub(1));
                p.request_id += 1;
                fx.push(Effect::Later {
                    after: SEARCH_DEBOUNCE,
                    action: Box::new(Action::PatientsDue { id: p.request_id }),
                });
            }
            app.popup = Some(Popup::PickPatient(p));
        }
        Popup::PickDoctor(d) => {
            if is(&k, KeyCode::Esc) {
                return;
            }
            if is(&k, KeyCode::Enter) {
                match app.doctors.rows.get(app.doctors.selected) {
                    Some(row) => match &row.next_free {
                        Some(slot) => {
                            app.popup = Some(Popup::Confirm(Pending::Book {
                                doctor_id: row.doctor.id,
                                doctor_name: row.doctor.name.clone(),
                                slot: slot.clone(),
                                patient: Some(d.patient.clone()),
                            }))
                        }
                        None => {
                            app.status.error = Some(format!(
                                "{} has no free slot soon: choose another doctor.",
                                row.doctor.name
                            ));
                            app.popup = Some(Popup::PickDoctor(d));
                        }
                    },
                    None => app.popup = Some(Popup::PickDoctor(d)),
                }
                return;
            }
            app.popup = Some(Popup::PickDoctor(d));
            if is(&k, KeyCode::Up) {
                app.doctors.selected = app.doctors.selected.saturating_sub(1);
            } else if is(&k, KeyCode::Down) {
                move_down(&mut app.doctors.selected, app.doctors.rows.len(), 1);
            } else if type_into(&mut app.doctors.query, k) {
                // Narrow at once (the search answers later with the same or fewer).
                let q = field_text(&app.doctors.query).trim().to_lowercase();
                app.doctors.rows.retain(|r| {
                    r.doctor.name.to_lowercase().contains(&q)
                        || r.doctor.specialty.to_lowercase().contains(&q)
                });
                app.doctors.selected = 0;
                doctors_debounce(app, fx);
            }
        }
        Popup::PickUploadPatient(p) => upload_picker_key(app, p, k, fx),
        Popup::Path(p) => path_key(app, p, k, fx),
        Popup::Grants(g) => grants_key(app, g, k, fx),
        Popup::Wrap(check) => {
            if is(&k, KeyCode::Char('y')) || is(&k, KeyCode::Enter) {
                vault(app, fx, Job::ConfirmWrap(check));
            } else if !(is(&k, KeyCode::Char('n')) || is(&k, KeyCode::Esc)) {
                app.popup = Some(Popup::Wrap(check));
                app.dirty = false;
            }
        }
        Popup::Messages(scroll) => {
            let max = app.status.history.len().saturating_sub(1) as u16;
            match app.keys.resolve(&k) {
                Some(Cmd::Up) => app.popup = Some(Popup::Messages((scroll + 1).min(max))),
                Some(Cmd::Down) => app.popup = Some(Popup::Messages(scroll.saturating_sub(1))),
                Some(Cmd::PageUp) => app.popup = Some(Popup::Messages((scroll + 10).min(max))),
                Some(Cmd::PageDown) => app.popup = Some(Popup::Messages(scroll.saturating_sub(10))),
                _ if is(&k, KeyCode::Esc) || is(&k, KeyCode::Enter) => {}
                Some(Cmd::Quit | Cmd::Messages) => {}
                _ => {
                    app.popup = Some(Popup::Messages(scroll));
                    app.dirty = false;
                }
            }
        }
        Popup::Viewer(mut v) => {
            let last = v.lines().saturating_sub(1);
            match app.keys.resolve(&k) {
                Some(Cmd::Down) => v.scroll = (v.scroll + 1).min(last),
                Some(Cmd::Up) => v.scroll = v.scroll.saturating_sub(1),
                Some(Cmd::PageDown) => v.scroll = (v.scroll + VIEWER_PAGE).min(last),
                Some(Cmd::PageUp) => v.scroll = v.scroll.saturating_sub(VIEWER_PAGE),
                _ if is(&k, KeyCode::Home) => v.scroll = 0,
                _ if is(&k, KeyCode::End) => v.scroll = last,
                // Closing drops the viewer, and with it the wiped text.
                _ if is(&k, KeyCode::Esc) || is(&k, KeyCode::Enter) => return,
                Some(Cmd::Quit | Cmd::Open) => return,
                _ => app.dirty = false,
            }
            app.popup = Some(Popup::Viewer(v));
        }
        Popup::Palette(mut p) => {
            if is(&k, KeyCode::Esc) {
                return;
            }
            let matches = palette_matches(&field_text(&p.input));
            if is(&k, KeyCode::Enter) {
                if let Some(cmd) = matches.get(p.selected) {
                    command(app, *cmd, fx);
                }
                return;
            }
            if is(&k, KeyCode::Up) {
                p.selected = p.selected.saturating_sub(1);
            } else if is(&k, KeyCode::Down) {
                move_down(&mut p.selected, matches.len(), 1);
            } else if type_into(&mut p.input, k) {
                p.selected = palette_default(&field_text(&p.input));
            }
            app.popup = Some(Popup::Palette(p));
        }
    }
}

/// Commands that end or leave the session: never pre-selected on an empty palette.
fn destructive(cmd: Cmd) -> bool {
    matches!(cmd, Cmd::Quit | Cmd::Logout)
}

/// The entry Enter takes: the first harmless match; a destructive one only once typed
/// by name (so `:` Enter never quits).
pub fn palette_default(q: &str) -> usize {
    let matches = palette_matches(q);
    matches.iter().position(|c| !destructive(*c)).unwrap_or(0)
}

/// Names match; addresses only once `@` is typed, phones when only digits are.
fn narrow_patients(r: &mut Vec<crate::api::PatientSummary>, query: &str) {
    let q = query.trim().to_lowercase();
    if q.is_empty() || q.contains('@') {
        return;
    }
    let digits = q.chars().all(|c| c.is_ascii_digit() || c == '+');
    r.retain(|x| x.name.to_lowercase().contains(&q) || (digits && x.phone.contains(&q)));
}

/// Palette entries whose name or description contains `q`.
pub fn palette_matches(q: &str) -> Vec<Cmd> {
    let q = q.trim().to_lowercase();
    COMMANDS
        .iter()
        .filter(|c| !matches!(c.cmd, Cmd::Palette | Cmd::Back))
        .filter(|c| q.is_empty() || c.name.contains(&q) || c.desc.to_lowercase().contains(&q))
        .map(|c| c.cmd)
        .collect()
}

fn confirm(app: &mut App, p: Pending, fx: &mut Vec<Effect>) {
    let Some(client) = client(app) else { return };
    match p {
        Pending::StopTransfer => {
            if let Some(t) = &app.transfer {
                t.cancel.store(true, Ordering::Relaxed);
                app.status.info = Some("Stopping the transfer…".into());
            }
        }
        Pending::AskConsent { report, .. } => vault(app, fx, Job::AskConsent(report)),
        Pending::Approve(g) => vault(app, fx, Job::Approve(g.id)),
        Pending::Revoke(g) => vault(app, fx, Job::Revoke(g.id)),
        Pending::Book {
            doctor_id,
            slot,
            patient,
            ..
        } => {
            let request = BookRequest {
                doctor_id,
                start: slot.start,
                patient_id: patient.map(|p| p.0),
            };
            net(app, fx, Effect::Book { client, request });
        }
        Pending::Transition { booking, action } => {
            net(
                app,
                fx,
                Effect::Transition {
                    client,
                    booking: booking.id,
                    action,
                },
            );
        }
    }
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
        Cmd::Messages => app.popup = Some(Popup::Messages(0)),
        Cmd::Back => {
            if app.status.error.take().is_some() {
                // Esc dismisses the message first.
            } else if app.pane == Pane::Bookings && !field_text(&app.bookings.filter).is_empty() {
                app.bookings.filter = BookingsPane::default().filter;
                app.bookings.refilter(app.tz);
            } else if app.pane == Pane::Reports
                && app.transfer.is_none()
                && app.reports.patient.is_some()
            {
                // Back from one patient's reports to the full list.
                app.reports.patient = None;
                app.reports.rows.clear();
                load_reports(app, fx);
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
                Pane::Mailbox => step(&mut app.mailbox.selected, app.mailbox.items.len(), up, by),
                Pane::Reports => step(&mut app.reports.selected, app.reports.rows.len(), up, by),
                Pane::Otp => step(&mut app.otp.selected, app.otp.items.len(), up, by),
                Pane::Ledger => step(&mut app.ledger.selected, app.ledger.entries.len(), up, by),
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

fn step(sel: &mut usize, len: usize, up: bool, by: usize) {
    if up {
        *sel = sel.saturating_sub(by);
    } else {
        move_down(sel, len, by);
    }
}

fn move_day(app: &mut App, days: i64, fx: &mut Vec<Effect>) {
    let d = app.calendar.selected.unwrap_or(app.clock.today);
    if let Some(to) = d.checked_add_signed(Days::days(days)) {
        set_day(app, to, fx);
    }
}

fn set_day(app: &mut App, to: NaiveDate, fx: &mut Vec<Effect>) {
    let old = app.calendar.month_start(app.clock.today);
    app.calendar.selected = Some(to);
    app.calendar.row = 0;
    app.calendar.in_day = false;
    if (to.year(), to.month()) != (old.year(), old.month()) {
        app.calendar.data = None;
        load_calendar(app, fx);
    }
}

fn book(app: &mut App, slot: crate::api::Slot, fx: &mut Vec<Effect>) {
    let Some(doctor) = app.calendar.doctor.clone() else {
        return;
    };
    match app.role() {
        Some(Role::Patient) => {
            app.popup = Some(Popup::Confirm(Pending::Book {
                doctor_id: doctor.id,
                doctor_name: doctor.name,
                slot,
                patient: None,
            }))
        }
        Some(Role::Reception) => open_patient_picker(app, Some((doctor, slot)), fx),
        _ => app.status.error = Some("Only patients and reception book slots.".into()),
    }
}

/// Reception picks the patient: for a chosen slot, or first in the new-booking flow.
fn open_patient_picker(
    app: &mut App,
    target: Option<(crate::api::Doctor, crate::api::Slot)>,
    fx: &mut Vec<Effect>,
) {
    let choose_doctor = target.is_none();
    let (doctor_id, doctor_name, slot) = match target {
        Some((d, s)) => (d.id, d.name, s),
        None => (
            uuid::Uuid::nil(),
            String::new(),
            crate::api::Slot {
                start: app.clock.now,
                end: app.clock.now,
                local_start: String::new(),
            },
        ),
    };
    app.popup = Some(Popup::PickPatient(Box::new(PatientPicker {
        query: text_field("patient name (or email with @, or phone)"),
        request_id: 0,
        results: vec![],
        selected: 0,
        error: None,
        doctor_id,
        doctor_name,
        slot,
        choose_doctor,
    })));
    fx.push(Effect::Later {
        after: Duration::ZERO,
        action: Box::new(Action::PatientsDue { id: 0 }),
    });
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

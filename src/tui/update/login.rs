//! The login, unlock and registration screens, and the outbox before login (demo).

use super::*;

pub(super) fn login_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    let order: &[LoginField] = if app.login.locked.is_some() {
        &[LoginField::Password]
    } else {
        &[
            LoginField::Email,
            LoginField::Password,
            LoginField::Register,
            LoginField::Recover,
        ]
    };
    if ctrl(&k, 'o') && app.server.demo {
        open_mailbox_screen(app, fx);
        return;
    }
    if ctrl(&k, 'g') && app.login.legacy_offer {
        legacy_salt_confirmed(app, fx);
        return;
    }
    if let Some(f) = cycle_focus(order, app.login.focus, &k) {
        app.login.focus = f;
    } else if is(&k, KeyCode::Esc) {
        app.login.message = None;
        app.login.legacy_offer = false;
        app.login.waiting_for_seed = false;
    } else if is(&k, KeyCode::Enter) {
        match app.login.focus {
            LoginField::Email => app.login.focus = LoginField::Password,
            LoginField::Register => {
                app.screen = Screen::Register;
                app.register.message = None;
            }
            LoginField::Recover => {
                app.screen = Screen::Recover;
                app.recover.message = None;
                let typed = field_text(&app.login.email);
                if field_text(&app.recover.email).is_empty() && !typed.is_empty() {
                    app.recover.email.insert_str(typed.trim());
                }
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

pub(super) fn submit_login(app: &mut App, fx: &mut Vec<Effect>) {
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
    let mut client = client;
    if std::mem::take(&mut app.login.legacy_confirmed) {
        client.opt_in_legacy_salt();
    }
    app.login.legacy_offer = false;
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

/// The server says this account's keys use the old, unbound salt (issue 17.9): offer the
/// opt-in, which the user must confirm with the password and Ctrl+G.
pub(super) fn legacy_salt_asked(app: &mut App) {
    done(app);
    app.login.busy = false;
    app.login.password.wipe();
    app.login.focus = LoginField::Password;
    app.login.legacy_offer = true;
    app.login.message = Some(
        "Server says: old password salt. Account older than this app? Retype the password, \
         Ctrl+G moves it. Newer? Stop: tell your clinic."
            .into(),
    );
    tracing::info!("login: server reports the old salt scheme");
}

/// Ctrl+G after the offer: the same login, with the opt-in for this one login.
fn legacy_salt_confirmed(app: &mut App, fx: &mut Vec<Effect>) {
    if app.login.password.is_empty() {
        app.login.message = Some("Type the password first, then Ctrl+G.".into());
        return;
    }
    app.login.legacy_confirmed = true;
    submit_login(app, fx);
    // Never left over for a later plain Enter, had the login not been sent.
    app.login.legacy_confirmed = false;
    app.dirty = true;
}

pub(super) fn seed_wait_message(app: &App) -> String {
    let (done, total) = app
        .seed
        .as_ref()
        .map(|p| (p.done, p.total))
        .unwrap_or((0, 0));
    format!(
        "Demo accounts are still being prepared ({done}/{total}): logging in when ready (Esc stops)."
    )
}

pub(super) fn register_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
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

pub(super) fn submit_register(app: &mut App, fx: &mut Vec<Effect>) {
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

pub(super) fn open_mailbox_screen(app: &mut App, fx: &mut Vec<Effect>) {
    app.back_screen = app.screen;
    app.screen = Screen::Mailbox;
    load_mailbox(app, fx);
    app.dirty = true;
}

pub(super) fn mailbox_screen_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    match app.keys.resolve(&k) {
        Some(Cmd::Back) | Some(Cmd::Quit) => app.screen = app.back_screen,
        Some(Cmd::Up) => {
            app.mailbox.selected = app.mailbox.selected.saturating_sub(1);
            app.mailbox.body_scroll = 0;
        }
        Some(Cmd::Down) => {
            move_down(&mut app.mailbox.selected, app.mailbox.items.len(), 1);
            app.mailbox.body_scroll = 0;
        }
        Some(Cmd::PageUp) => mailbox_scroll(app, true),
        Some(Cmd::PageDown) => mailbox_scroll(app, false),
        Some(Cmd::Refresh) => load_mailbox(app, fx),
        _ => return,
    }
    app.dirty = true;
}

pub(super) fn after_login(app: &mut App, fx: &mut Vec<Effect>) {
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

pub(super) fn seed_progress(
    app: &mut App,
    p: crate::tui::state::SeedProgress,
    fx: &mut Vec<Effect>,
) {
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

pub(super) fn logged_in(
    app: &mut App,
    r: crate::tui::action::UiResult<Box<(ApiClient, crate::client::LoggedIn)>>,
    fx: &mut Vec<Effect>,
) {
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

pub(super) fn code_mailed(
    app: &mut App,
    r: crate::tui::action::UiResult<crate::api::VerifyEmailResponse>,
) {
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

pub(super) fn registered(app: &mut App, r: crate::tui::action::UiResult<String>) {
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

/// The recovery screen: email, code, new password twice; Enter on the last sends.
pub(super) fn recover_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    use crate::tui::state::RecoverField as F;
    let order = [F::Email, F::Code, F::New, F::Again];
    if app.recover.busy {
        return;
    }
    if let Some(f) = cycle_focus(&order, app.recover.focus, &k) {
        app.recover.focus = f;
    } else if is(&k, KeyCode::Esc) {
        // Back to the login; the code and passwords typed so far go.
        app.recover = RecoverForm {
            email: app.recover.email.clone(),
            ..Default::default()
        };
        app.screen = Screen::Login;
    } else if is(&k, KeyCode::Enter) {
        let r = &mut app.recover;
        if r.focus != F::Again {
            let pos = order.iter().position(|f| *f == r.focus).unwrap_or(0);
            r.focus = order[pos + 1];
        } else if field_text(&r.email).trim().is_empty() || r.code.is_empty() || r.new.is_empty() {
            r.message = Some("Enter your email, the recovery code and a new password.".into());
        } else if !r.new.same_as(&r.again) {
            r.again.wipe();
            r.message = Some("The two new passwords differ.".into());
        } else if let Some(client) = app.client_template.clone() {
            let email = field_text(&r.email).trim().to_lowercase();
            let code = r.code.take();
            let new = r.new.take();
            r.again.wipe();
            r.busy = true;
            r.message = Some("Opening your keys with the code…".into());
            let settings = app.report_settings.clone();
            net(
                app,
                fx,
                Effect::Recover {
                    client,
                    email,
                    code,
                    new,
                    settings,
                },
            );
        } else {
            r.message = Some("The server is still starting: try again in a moment.".into());
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

//! The login's TOTP step (issue 15): the code after the password, enrolment at login when
//! the role requires it, and the recovery codes shown once before the session opens.

use super::*;
use crate::tui::state::{TotpForm, TotpRecovery};

/// The password was right: on to the code (or the enrolment) screen.
pub(super) fn totp_needed(app: &mut App, start: Box<crate::tui::action::TotpStart>) {
    done(app);
    app.login.busy = false;
    app.login.message = None;
    let s = *start;
    app.totp = TotpForm {
        email: s.email,
        client: Some(s.client),
        pending: Some(Arc::new(s.pending)),
        enrolment: s.enrolment,
        ..Default::default()
    };
    app.screen = Screen::Totp;
    app.dirty = true;
}

pub(super) fn totp_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
    if app.totp.busy {
        return;
    }
    if app.totp.recovery.is_some() {
        // Recovery codes on screen: Enter (only) goes on, and they are not shown again.
        if is(&k, KeyCode::Enter)
            && let Some(r) = app.totp.recovery.take()
        {
            app.totp = TotpForm::default();
            match r.session {
                Some(s) => logged_in(app, Ok(s), fx),
                None => {
                    app.screen = Screen::Main;
                    app.status.info =
                        Some("Second factor set up: logins now ask for a code.".into());
                }
            }
            app.dirty = true;
        }
        return;
    }
    if is(&k, KeyCode::Esc) {
        // Back to the password (the pending login is dropped with the form), or to the
        // panes from a session (the unconfirmed secret is never used).
        let signed_in = app.totp.signed_in;
        app.totp = TotpForm::default();
        app.screen = if signed_in {
            Screen::Main
        } else {
            Screen::Login
        };
    } else if is(&k, KeyCode::Enter) {
        submit(app, fx);
    } else {
        app.totp.code.0.key(k);
    }
    app.dirty = true;
}

fn submit(app: &mut App, fx: &mut Vec<Effect>) {
    if app.totp.signed_in {
        let Some(client) = app.session.as_ref().map(|s| s.client.clone()) else {
            return;
        };
        if app.totp.code.0.is_empty() {
            app.totp.message = Some("Enter the code first.".into());
            return;
        }
        let code = app.totp.code.0.take();
        app.totp.busy = true;
        app.totp.message = Some("Checking the code…".into());
        net(app, fx, Effect::TotpConfirm { client, code });
        return;
    }
    let (Some(client), Some(pending)) = (app.totp.client.clone(), app.totp.pending.clone()) else {
        app.totp.message = Some("Log in again.".into());
        return;
    };
    if app.totp.code.0.is_empty() {
        app.totp.message = Some("Enter the code first.".into());
        return;
    }
    let code = app.totp.code.0.take();
    app.totp.busy = true;
    app.totp.message = Some("Checking the code…".into());
    let settings = app.report_settings.clone();
    net(
        app,
        fx,
        Effect::LoginTotp {
            client,
            pending,
            code,
            settings,
        },
    );
}

pub(super) fn totp_logged_in(
    app: &mut App,
    r: crate::tui::action::UiResult<Box<(ApiClient, crate::client::LoggedIn, Vec<String>)>>,
    fx: &mut Vec<Effect>,
) {
    done(app);
    app.totp.busy = false;
    match r {
        Ok(b) => {
            let (client, logged, codes) = *b;
            if codes.is_empty() {
                app.totp = TotpForm::default();
                logged_in(app, Ok(Box::new((client, logged))), fx);
            } else {
                app.totp.enrolment = None;
                app.totp.pending = None;
                app.totp.client = None;
                app.totp.message = None;
                app.totp.recovery = Some(TotpRecovery {
                    codes,
                    session: Some(Box::new((client, logged))),
                });
            }
        }
        Err(e) => {
            // A wrong code may be tried again on the same pending login (the account
            // backoff counts it); an expired one needs the password again.
            if e.contains(crate::api::codes::LOGIN_STEP_EXPIRED) {
                app.totp = TotpForm::default();
                app.screen = Screen::Login;
                app.login.message = Some(e);
            } else {
                app.totp.message = Some(e);
            }
        }
    }
}

/// `:totp`: a new secret for a staff member signed in without TOTP.
pub(super) fn start_enrolment(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(s) = &app.session else {
        return;
    };
    if s.user.role == Role::Patient {
        app.status.error = Some("The second factor (TOTP) is for the clinic's staff.".into());
        return;
    }
    let client = s.client.clone();
    app.status.info = Some("Asking for a TOTP secret…".into());
    net(app, fx, Effect::TotpEnrol { client });
}

pub(super) fn enrol_started(
    app: &mut App,
    r: crate::tui::action::UiResult<crate::api::TotpEnrolment>,
) {
    done(app);
    match r {
        Ok(e) if app.session.is_some() => {
            app.status.info = None;
            app.totp = TotpForm {
                email: app
                    .session
                    .as_ref()
                    .map(|s| s.user.email.clone())
                    .unwrap_or_default(),
                enrolment: Some(e),
                signed_in: true,
                ..Default::default()
            };
            app.screen = Screen::Totp;
        }
        // Logged out or locked meanwhile: the secret is dropped.
        Ok(_) => {}
        Err(e) => app.status.error = Some(e),
    }
}

pub(super) fn confirmed(app: &mut App, r: crate::tui::action::UiResult<Vec<String>>) {
    done(app);
    app.totp.busy = false;
    if app.screen != Screen::Totp || !app.totp.signed_in {
        return;
    }
    match r {
        Ok(codes) => {
            app.totp.enrolment = None;
            app.totp.message = None;
            app.totp.recovery = Some(TotpRecovery {
                codes,
                session: None,
            });
        }
        Err(e) => app.totp.message = Some(e),
    }
}

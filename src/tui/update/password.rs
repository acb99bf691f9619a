//! The password-change popup (issue 15): current, new, again; Enter on the last sends.

use super::*;
use crate::tui::state::{KitPopup, PasswordChange, PasswordField};

pub(super) fn password_key(
    app: &mut App,
    mut p: Box<PasswordChange>,
    k: KeyEvent,
    fx: &mut Vec<Effect>,
) {
    // Esc drops the popup, and with it the three fields (zeroized).
    if is(&k, KeyCode::Esc) {
        return;
    }
    let order = [
        PasswordField::Current,
        PasswordField::New,
        PasswordField::Again,
    ];
    if let Some(f) = cycle_focus(&order, p.focus, &k) {
        p.focus = f;
    } else if is(&k, KeyCode::Enter) {
        if p.focus != PasswordField::Again {
            p.focus = if p.focus == PasswordField::Current {
                PasswordField::New
            } else {
                PasswordField::Again
            };
        } else if p.current.is_empty() || p.new.is_empty() {
            p.message = Some("Type the current password and the new one.".into());
        } else if !p.new.same_as(&p.again) {
            p.again.wipe();
            p.message = Some("The two new passwords differ.".into());
        } else if p.new.same_as(&p.current) {
            p.new.wipe();
            p.again.wipe();
            p.focus = PasswordField::New;
            p.message = Some("The new password is the current one.".into());
        } else if let Some(client) = client(app) {
            let current = p.current.take();
            let new = p.new.take();
            p.again.wipe();
            app.status.info = Some("Changing the password…".into());
            net(
                app,
                fx,
                Effect::ChangePassword {
                    client,
                    current,
                    new,
                },
            );
            return;
        }
    } else {
        p.focused().key(k);
    }
    app.popup = Some(Popup::Password(p));
}

pub(super) fn kit_key(app: &mut App, mut p: Box<KitPopup>, k: KeyEvent, fx: &mut Vec<Effect>) {
    if p.code.is_some() {
        // Shown: Enter or Esc closes, and the code goes with the popup.
        if !(is(&k, KeyCode::Enter) || is(&k, KeyCode::Esc)) {
            app.popup = Some(Popup::RecoveryKit(p));
            app.dirty = false;
        }
        return;
    }
    if p.busy {
        // The kit is being made: it must be shown when it comes back, so no closing now.
        app.popup = Some(Popup::RecoveryKit(p));
        app.dirty = false;
        return;
    }
    if is(&k, KeyCode::Esc) {
        return;
    }
    if is(&k, KeyCode::Enter) {
        if p.password.is_empty() {
            p.message = Some("Type your password first.".into());
        } else if let Some(client) = client(app) {
            let password = p.password.take();
            p.busy = true;
            p.message = Some("Making the kit…".into());
            net(app, fx, Effect::MakeKit { client, password });
        }
    } else {
        p.password.key(k);
    }
    app.popup = Some(Popup::RecoveryKit(p));
}

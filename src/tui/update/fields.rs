//! Text fields and form focus: which field has the keys, readline editing, path completion.

use super::*;

/// The text field that has the keys, if any.
pub(super) fn focused_field(app: &mut App) -> Option<&mut TextArea<'static>> {
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
        Screen::Recover => match app.recover.focus {
            crate::tui::state::RecoverField::Email => Some(&mut app.recover.email),
            _ => None,
        },
        // The TOTP code is a `SecretField` too.
        Screen::Mailbox | Screen::Totp => None,
        Screen::Main
            if app.popup.is_none()
                && !(app.pane == Pane::Otp && app.otp.editing)
                && app.list_filter().is_some_and(|f| f.focused) =>
        {
            app.list_filter_mut().map(|f| &mut f.field)
        }
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
            None => None,
        },
    }
}

/// The password field that has the keys, if any.
pub(super) fn focused_secret(app: &mut App) -> Option<&mut crate::tui::secret::SecretField> {
    match &mut app.popup {
        Some(Popup::Password(p)) => return Some(p.focused()),
        Some(Popup::RecoveryKit(p)) if p.code.is_none() && !p.busy => {
            return Some(&mut p.password);
        }
        _ => {}
    }
    if app.screen == Screen::Totp && app.totp.recovery.is_none() {
        return Some(&mut app.totp.code.0);
    }
    if app.screen == Screen::Recover {
        use crate::tui::state::RecoverField as F;
        return match app.recover.focus {
            F::Email => None,
            F::Code => Some(&mut app.recover.code),
            F::New => Some(&mut app.recover.new),
            F::Again => Some(&mut app.recover.again),
        };
    }
    match (app.screen, app.login.focus, app.register.focus) {
        (Screen::Login, LoginField::Password, _) => Some(&mut app.login.password),
        (Screen::Register, _, RegisterField::Password) => Some(&mut app.register.password),
        (Screen::Register, _, RegisterField::Confirm) => Some(&mut app.register.confirm),
        _ => None,
    }
}

/// Tab/Down and S-Tab/Up move the focus through a form's fields, round; `None` for other keys.
pub(super) fn cycle_focus<T: Copy + PartialEq>(order: &[T], now: T, k: &KeyEvent) -> Option<T> {
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
pub(super) fn after_edit(app: &mut App, fx: &mut Vec<Effect>) {
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
            if app.list_filter().is_some_and(|f| f.focused) {
                app.refilter();
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

pub(super) fn is(k: &KeyEvent, code: KeyCode) -> bool {
    k.code == code && !k.modifiers.contains(KeyModifiers::CONTROL)
}

pub(super) fn ctrl(k: &KeyEvent, c: char) -> bool {
    k.code == KeyCode::Char(c) && k.modifiers.contains(KeyModifiers::CONTROL)
}

/// Text input into `t`; true when the text changed.
pub(super) fn type_into(t: &mut TextArea<'static>, k: KeyEvent) -> bool {
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

/// The `/` filter of every list: Esc or Enter leave the field and keep the filter; Up/Down
/// move through what it lets through.
pub(super) fn filter_key(app: &mut App, k: KeyEvent) {
    let n = app.list_len();
    if is(&k, KeyCode::Esc) || is(&k, KeyCode::Enter) {
        if let Some(f) = app.list_filter_mut() {
            f.focused = false;
        }
    } else if is(&k, KeyCode::Up) || is(&k, KeyCode::Down) {
        if let Some(sel) = app.list_selected_mut() {
            if is(&k, KeyCode::Up) {
                *sel = sel.saturating_sub(1);
            } else {
                move_down(sel, n, 1);
            }
        }
        if app.pane == Pane::Mailbox {
            app.mailbox.body_scroll = 0;
        }
    } else if app
        .list_filter_mut()
        .is_some_and(|f| type_into(&mut f.field, k))
    {
        app.refilter();
        if app.pane == Pane::Mailbox {
            app.mailbox.body_scroll = 0;
        }
    } else {
        return;
    }
    app.dirty = true;
}

pub(super) fn search_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
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

pub(super) fn move_down(sel: &mut usize, len: usize, by: usize) {
    *sel = (*sel + by).min(len.saturating_sub(1));
}

pub(super) fn step(sel: &mut usize, len: usize, up: bool, by: usize) {
    if up {
        *sel = sel.saturating_sub(by);
    } else {
        move_down(sel, len, by);
    }
}

pub(super) fn paste(app: &mut App, text: String, fx: &mut Vec<Effect>) {
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

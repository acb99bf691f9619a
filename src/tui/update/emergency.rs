//! Issue 16: break-glass in the terminal client (docs/protocol.md §17). A doctor on the
//! emergency team opens a request (`B`), reads what it released through the release's
//! checked ledger entry (`E`, `Enter`); a patient vetoes one during its wait (`E`, `v`).

use super::*;
use crate::api::emergency::EmergencyRequest;
use crate::tui::action::{EmDone, EmJob, Fail};
use crate::tui::state::{BreakGlass, BreakGlassField, EmergencyView};
use uuid::Uuid;

/// The reason's bounds, as the server and the CLI count them (characters, trimmed).
pub const REASON_MIN: usize = 5;
pub const REASON_MAX: usize = 500;

/// What is wrong with the form, if anything.
pub fn form_problem(patient: &str, reason: &str) -> Option<String> {
    let n = reason.trim().chars().count();
    if patient.trim().is_empty() {
        Some("Type the patient's id or exact email address.".into())
    } else if n < REASON_MIN {
        Some(format!(
            "The reason is too short ({n} of at least {REASON_MIN} characters): say why; it is \
             mailed to the patient and the administrators."
        ))
    } else if n > REASON_MAX {
        Some(format!(
            "The reason is too long ({n} characters, at most {REASON_MAX}): shorten it."
        ))
    } else {
        None
    }
}

fn role(app: &App) -> Option<Role> {
    app.session.as_ref().map(|s| s.user.role)
}

/// `B`: the form, for doctors (the server decides who is on the team).
pub(super) fn open_form(app: &mut App) {
    if role(app) != Some(Role::Doctor) {
        app.status.error = Some("Break-glass is for doctors on the emergency team.".into());
        return;
    }
    if app.ledger.failed.is_some() {
        app.status.error =
            Some("The ledger check failed: no report action until it is resolved.".into());
        return;
    }
    app.popup = Some(Popup::BreakGlass(Box::default()));
}

/// `E`: the requests the server shows the caller.
pub(super) fn open_list(app: &mut App, fx: &mut Vec<Effect>) {
    if !matches!(role(app), Some(Role::Doctor | Role::Patient)) {
        app.status.error = Some("Break-glass requests are shown to doctors and patients.".into());
        return;
    }
    app.popup = Some(Popup::Emergencies(Box::new(EmergencyView {
        loading: true,
        ..Default::default()
    })));
    vault(app, fx, Job::Emergency(EmJob::List));
}

pub(super) fn break_glass_key(
    app: &mut App,
    mut b: Box<BreakGlass>,
    k: KeyEvent,
    fx: &mut Vec<Effect>,
) {
    if b.sending {
        // The request is on its way; Esc hides the popup (the answer goes to the status line).
        if !is(&k, KeyCode::Esc) {
            app.popup = Some(Popup::BreakGlass(b));
            app.dirty = false;
        }
        return;
    }
    if b.confirming {
        if is(&k, KeyCode::Char('y')) || is(&k, KeyCode::Enter) {
            let job = EmJob::Open {
                patient: field_text(&b.patient).trim().to_string(),
                reason: field_text(&b.reason).trim().to_string(),
            };
            b.sending = true;
            app.popup = Some(Popup::BreakGlass(b));
            vault(app, fx, Job::Emergency(job));
        } else if is(&k, KeyCode::Char('n')) || is(&k, KeyCode::Esc) {
            b.confirming = false;
            app.popup = Some(Popup::BreakGlass(b));
        } else {
            app.popup = Some(Popup::BreakGlass(b));
            app.dirty = false;
        }
        return;
    }
    if is(&k, KeyCode::Esc) {
        return;
    }
    let switch = is(&k, KeyCode::Tab)
        || k.code == KeyCode::BackTab
        || is(&k, KeyCode::Up)
        || is(&k, KeyCode::Down);
    if switch || (is(&k, KeyCode::Enter) && b.focus == BreakGlassField::Patient) {
        b.focus = match b.focus {
            BreakGlassField::Patient => BreakGlassField::Reason,
            BreakGlassField::Reason => BreakGlassField::Patient,
        };
    } else if is(&k, KeyCode::Enter) {
        b.message = form_problem(&field_text(&b.patient), &field_text(&b.reason));
        b.confirming = b.message.is_none();
    } else {
        let f = match b.focus {
            BreakGlassField::Patient => &mut b.patient,
            BreakGlassField::Reason => &mut b.reason,
        };
        if type_into(f, k) {
            b.message = None;
        }
    }
    app.popup = Some(Popup::BreakGlass(b));
}

/// The request behind the selected row.
fn selected(app: &App, v: &EmergencyView) -> Option<(EmergencyRequest, Option<Uuid>)> {
    let reader = role(app) == Some(Role::Doctor);
    let row = *v.rows(reader).get(v.selected)?;
    Some((v.requests.get(row.request)?.clone(), row.report))
}

pub(super) fn emergencies_key(
    app: &mut App,
    mut v: Box<EmergencyView>,
    k: KeyEvent,
    fx: &mut Vec<Effect>,
) {
    if let Some(id) = v.confirm_veto {
        if is(&k, KeyCode::Char('y')) || is(&k, KeyCode::Enter) {
            v.confirm_veto = None;
            v.message = Some("Vetoing…".into());
            app.popup = Some(Popup::Emergencies(v));
            vault(app, fx, Job::Emergency(EmJob::Veto(id)));
        } else if is(&k, KeyCode::Char('n')) || is(&k, KeyCode::Esc) {
            v.confirm_veto = None;
            app.popup = Some(Popup::Emergencies(v));
        } else {
            app.popup = Some(Popup::Emergencies(v));
            app.dirty = false;
        }
        return;
    }
    let reader = role(app) == Some(Role::Doctor);
    let n = v.rows(reader).len();
    if is(&k, KeyCode::Esc) || is(&k, KeyCode::Char('q')) {
        return;
    }
    match app.keys.resolve(&k) {
        Some(Cmd::Up) => v.selected = v.selected.saturating_sub(1),
        Some(Cmd::Down) => move_down(&mut v.selected, n, 1),
        Some(Cmd::Refresh) => {
            v.loading = true;
            vault(app, fx, Job::Emergency(EmJob::List));
        }
        _ if is(&k, KeyCode::Enter) => match selected(app, &v) {
            // A failed ledger check blocks every report action for the session.
            Some((_, Some(_))) if app.ledger.failed.is_some() => {
                v.message =
                    Some("The ledger check failed: no report is read until it is resolved.".into());
            }
            Some((r, Some(report))) => {
                v.message = Some("Checking the break-glass entry and reading the report…".into());
                vault(
                    app,
                    fx,
                    Job::Emergency(EmJob::Read {
                        request: r.id,
                        report,
                    }),
                );
            }
            // On a request: ask again (a waiting one may have been released since).
            Some(_) => {
                v.loading = true;
                vault(app, fx, Job::Emergency(EmJob::List));
            }
            None => app.dirty = false,
        },
        _ if is(&k, KeyCode::Char('v')) && !reader => match selected(app, &v) {
            Some((r, _)) if r.status == "waiting" => v.confirm_veto = Some(r.id),
            Some((r, _)) => {
                v.message = Some(format!(
                    "Only a waiting request can be vetoed; this one is {}.",
                    r.status
                ))
            }
            None => app.dirty = false,
        },
        _ => app.dirty = false,
    }
    app.popup = Some(Popup::Emergencies(v));
}

/// The text of a request's state, for the list and the status line.
pub fn state_text(app: &App, r: &EmergencyRequest) -> String {
    match r.status.as_str() {
        "waiting" => format!(
            "released at {} unless the patient vetoes",
            r.release_at.with_timezone(&app.tz).format("%H:%M")
        ),
        "released" => format!(
            "released: {}",
            match r.report_ids.len() {
                1 => "1 report".to_string(),
                n => format!("{n} reports"),
            }
        ),
        "vetoed" => "vetoed by the patient: nothing was released".into(),
        "ended" => "ended (its hour is over)".into(),
        other => crate::text::display(other).to_string(),
    }
}

pub(super) fn on_done(app: &mut App, d: EmDone) {
    match d {
        EmDone::Opened(Ok(r)) => {
            // The list below shows the state (released, or when); the line says what happened.
            app.status.info = Some(format!(
                "Break-glass logged in the ledger (#{}); patient and admins mailed.",
                r.ledger_index
            ));
            app.status.error = None;
            app.popup = Some(Popup::Emergencies(Box::new(EmergencyView {
                selected: usize::from(r.status == "released"),
                requests: vec![r],
                ..Default::default()
            })));
        }
        EmDone::Opened(Err(Fail::Ledger(m))) => {
            app.popup = None;
            super::vault::fail(app, Fail::Ledger(m), |_, _| {});
        }
        EmDone::Opened(Err(f)) => {
            if let Some(Popup::BreakGlass(b)) = &mut app.popup {
                b.sending = false;
                b.confirming = false;
                b.message = Some(f.text().to_string());
            } else {
                app.status.error = Some(f.text().to_string());
            }
        }
        EmDone::Listed(r) => {
            let Some(Popup::Emergencies(v)) = &mut app.popup else {
                return;
            };
            v.loading = false;
            match r {
                Ok(mut list) => {
                    list.sort_by_key(|b| std::cmp::Reverse(b.created_at));
                    v.requests = list;
                    v.message = None;
                    let reader = role(app) == Some(Role::Doctor);
                    let Some(Popup::Emergencies(v)) = &mut app.popup else {
                        return;
                    };
                    v.selected = v.selected.min(v.rows(reader).len().saturating_sub(1));
                }
                Err(f) => v.message = Some(f.text().to_string()),
            }
        }
        EmDone::Read(Ok(viewer)) => {
            if matches!(app.popup, Some(Popup::Emergencies(_)) | None)
                && app.screen == crate::tui::state::Screen::Main
            {
                app.status.info = Some(
                    "Break-glass read: its ledger entry and every report check passed.".into(),
                );
                app.popup = Some(Popup::Viewer(viewer));
            }
        }
        EmDone::Read(Err(f)) => {
            let text = match &f {
                Fail::Check(m) => format!("FAILED ✗ {m}"),
                other => other.text().to_string(),
            };
            if let Some(Popup::Emergencies(v)) = &mut app.popup {
                v.message = Some(text.clone());
            }
            super::vault::fail(app, f, |app, _| app.status.error = Some(text));
        }
        EmDone::Vetoed(r) => {
            let text = match &r {
                Ok(req) => format!(
                    "Vetoed: Dr {}'s request is stopped; nothing was released.",
                    crate::text::display(&req.reader_name)
                ),
                Err(f) => f.text().to_string(),
            };
            if let Some(Popup::Emergencies(v)) = &mut app.popup {
                v.message = Some(text.clone());
                if let Ok(req) = &r
                    && let Some(old) = v.requests.iter_mut().find(|x| x.id == req.id)
                {
                    *old = req.clone();
                }
            }
            match r {
                Ok(_) => {
                    app.status.info = Some(text);
                    app.status.error = None;
                }
                Err(f) => super::vault::fail(app, f, |app, m| app.status.error = Some(m)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_says_what_is_wrong() {
        assert!(
            form_problem("", "unconscious")
                .unwrap()
                .contains("patient's id")
        );
        assert!(
            form_problem("p@x", " abc ")
                .unwrap()
                .contains("too short (3 of")
        );
        assert!(
            form_problem("p@x", &"x".repeat(501))
                .unwrap()
                .contains("too long")
        );
        assert_eq!(form_problem("p@x", "ab cd"), None);
        assert_eq!(form_problem("p@x", &"é".repeat(500)), None);
    }
}

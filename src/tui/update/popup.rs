//! Keys in popups: confirmations, pickers, the palette, messages, the report viewer.

use super::*;

/// Lines a page key moves in the viewer (its body is about 16 lines at 80×24).
pub(super) const VIEWER_PAGE: usize = 15;

pub(super) fn popup_key(app: &mut App, k: KeyEvent, fx: &mut Vec<Effect>) {
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
        Popup::Password(p) => super::password::password_key(app, p, k, fx),
        Popup::RecoveryKit(p) => super::password::kit_key(app, p, k, fx),
        Popup::Grants(g) => grants_key(app, g, k, fx),
        Popup::Wrap(check) => {
            if is(&k, KeyCode::Char('y')) || is(&k, KeyCode::Enter) {
                vault(app, fx, Job::ConfirmWrap(check));
            } else if !(is(&k, KeyCode::Char('n')) || is(&k, KeyCode::Esc)) {
                app.popup = Some(Popup::Wrap(check));
                app.dirty = false;
            }
        }
        // Accept only on a deliberate key, after comparing fingerprints with the user.
        Popup::KeyRotated(r) => {
            if is(&k, KeyCode::Char('a')) {
                vault(
                    app,
                    fx,
                    Job::AcceptKey {
                        user: r.user,
                        grant: r.grant,
                    },
                );
            } else if !is(&k, KeyCode::Esc) {
                app.popup = Some(Popup::KeyRotated(r));
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
        // Issue 16: break-glass.
        Popup::BreakGlass(b) => super::emergency::break_glass_key(app, b, k, fx),
        Popup::Emergencies(v) => super::emergency::emergencies_key(app, v, k, fx),
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
pub(super) fn destructive(cmd: Cmd) -> bool {
    matches!(cmd, Cmd::Quit | Cmd::Logout)
}

/// The entry Enter takes: the first harmless match; a destructive one only once typed
/// by name (so `:` Enter never quits).
pub fn palette_default(q: &str) -> usize {
    let matches = palette_matches(q);
    matches.iter().position(|c| !destructive(*c)).unwrap_or(0)
}

/// Names match; addresses only once `@` is typed, phones when only digits are.
pub(super) fn narrow_patients(r: &mut Vec<crate::api::PatientSummary>, query: &str) {
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

pub(super) fn confirm(app: &mut App, p: Pending, fx: &mut Vec<Effect>) {
    let Some(client) = client(app) else { return };
    match p {
        Pending::StopTransfer => {
            if let Some(t) = &app.transfer {
                t.cancel.store(true, Ordering::Relaxed);
                app.status.info = Some("Stopping the transfer…".into());
            }
        }
        Pending::AskConsent { report, .. } => vault(app, fx, Job::AskConsent(report)),
        Pending::Export { report, title } => super::vault::ask_export_path(app, report, &title),
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

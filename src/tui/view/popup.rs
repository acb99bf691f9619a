//! Confirmations, the patient picker and the command palette, drawn over the pane.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, List, ListItem, ListState, Paragraph, Wrap};

use crate::tui::keymap::{self, Cmd};
use crate::tui::state::{
    App, DoctorStep, GrantsView, KitPopup, Palette, PasswordChange, PasswordField, PathEntry,
    PathFor, PatientPicker, Pending, PickFor, Popup, UploadPicker, field_text,
};
use crate::tui::update::{palette_matches, status_word};
use crate::tui::view::{boxed, centered, truncate};

/// The open popup, if any: one function each.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(p) = &app.popup else { return };
    match p {
        Popup::Viewer(v) => super::viewer::render(app, v, frame, area),
        Popup::Confirm(pending) => confirm(app, frame, area, pending),
        Popup::ConfirmQuit => dialog(
            app,
            frame,
            area,
            " Quit? ",
            "Requests are still running. Quit anyway?",
        ),
        Popup::PickPatient(p) => pick_patient(app, frame, area, p),
        Popup::PickDoctor(d) => pick_doctor(app, frame, area, d),
        Popup::PickUploadPatient(p) => pick_upload_patient(app, frame, area, p),
        Popup::Path(p) => path(app, frame, area, p),
        Popup::Grants(g) => grants(app, frame, area, g),
        Popup::Wrap(c) => wrap(app, frame, area, c),
        Popup::KeyRotated(r) => key_rotated(app, frame, area, r),
        Popup::Messages(scroll) => messages(app, frame, area, scroll),
        Popup::Palette(p) => palette(app, frame, area, p),
        Popup::Password(p) => password(app, frame, area, p),
        Popup::RecoveryKit(k) => recovery_kit(app, frame, area, k),
        // Issue 16: break-glass.
        Popup::BreakGlass(b) => super::emergency::break_glass(app, frame, area, b),
        Popup::Emergencies(v) => super::emergency::emergencies(app, frame, area, v),
    }
}

/// The password first; then the code, once, with what to do with it.
fn recovery_kit(app: &App, frame: &mut Frame, area: Rect, k: &KitPopup) {
    let t = &app.theme;
    let bx = centered(area, 64, 12);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" New recovery kit ", t.title),
        t.accent,
    );
    let rows = Layout::vertical([Constraint::Length(1); 10]).split(inner);
    if let Some(code) = &k.code {
        frame.render_widget(
            Line::from(vec![Span::raw("  "), Span::styled(code.as_str(), t.title)]),
            rows[1],
        );
        frame.render_widget(
            Paragraph::new(Span::styled(
                "Print this code or write it down and keep it somewhere safe, not on this \
                 computer. With it you can set a new password if you forget yours; without \
                 both, your reports cannot be opened again. It is shown only now; your \
                 earlier code no longer works.",
                t.base,
            ))
            .wrap(Wrap { trim: true }),
            Rect {
                height: 5,
                ..rows[3]
            },
        );
        frame.render_widget(
            Span::styled("Enter or Esc: I have kept it (the code is wiped)", t.muted),
            rows[9],
        );
        return;
    }
    frame.render_widget(
        Paragraph::new(Span::styled(
            "A new code replaces your earlier one. Your password opens your keys here; it \
             does not leave this computer.",
            t.muted,
        ))
        .wrap(Wrap { trim: true }),
        Rect {
            height: 2,
            ..rows[0]
        },
    );
    let [l, v] = Layout::horizontal([Constraint::Length(10), Constraint::Min(1)]).areas(rows[3]);
    frame.render_widget(Span::styled("Password", t.accent), l);
    let mut m = k.password.mask.clone();
    m.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
    m.set_placeholder_style(t.muted);
    frame.render_widget(&m, v);
    if let Some(msg) = &k.message {
        frame.render_widget(
            Paragraph::new(Span::styled(
                msg.as_str(),
                if k.busy { t.warn } else { t.error },
            ))
            .wrap(Wrap { trim: true }),
            Rect {
                height: 2,
                ..rows[5]
            },
        );
    }
    frame.render_widget(
        Span::styled("Enter make the kit · Esc close", t.muted),
        rows[9],
    );
}

/// Three masked fields; only bullets are ever drawn.
fn password(app: &App, frame: &mut Frame, area: Rect, p: &PasswordChange) {
    let t = &app.theme;
    let bx = centered(area, 64, 11);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" Change your password ", t.title),
        t.accent,
    );
    let rows = Layout::vertical([Constraint::Length(1); 9]).split(inner);
    let fields = [
        ("Current", &p.current, PasswordField::Current),
        ("New", &p.new, PasswordField::New),
        ("Again", &p.again, PasswordField::Again),
    ];
    for (i, (label, f, which)) in fields.into_iter().enumerate() {
        let [l, v] =
            Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(rows[i * 2]);
        let focused = p.focus == which;
        frame.render_widget(
            Span::styled(label, if focused { t.accent } else { t.muted }),
            l,
        );
        let mut m = f.mask.clone();
        if focused {
            m.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
        } else {
            m.set_cursor_style(Style::new());
        }
        m.set_placeholder_style(t.muted);
        frame.render_widget(&m, v);
    }
    let note = p
        .message
        .as_deref()
        .unwrap_or("Your keys stay the same: no report needs re-wrapping. Other sessions end.");
    frame.render_widget(
        Paragraph::new(Span::styled(
            note,
            if p.message.is_some() {
                t.error
            } else {
                t.muted
            },
        ))
        .wrap(Wrap { trim: true }),
        rows[6],
    );
    frame.render_widget(
        Span::styled("Tab next field · Enter change · Esc close", t.muted),
        rows[8],
    );
}

fn confirm(app: &App, frame: &mut Frame, area: Rect, pending: &Pending) {
    let text = match pending {
        Pending::Book {
            doctor_name,
            slot,
            patient,
            ..
        } => {
            let who = match patient {
                Some((_, name)) => format!(" for {name}"),
                None => String::new(),
            };
            format!("Book {} with {doctor_name}{who}?", app.local(slot.start))
        }
        Pending::Transition { booking, action } => format!(
            "{} the visit of {} with {} on {} (now {})?",
            match *action {
                "cancel" => "Cancel",
                "check-in" => "Check in",
                _ => "Mark completed:",
            },
            booking.patient_name,
            booking.doctor_name,
            app.local(booking.start),
            status_word(booking.status)
        ),
        Pending::StopTransfer => "Stop the transfer? An upload resumes when you upload the same file again; a stopped download leaves nothing behind.".into(),
        Pending::AskConsent {
            patient, author, ..
        } => format!(
            "Ask {patient} for consent to read the report by {author}? They approve in their client or with a mailed code."
        ),
        Pending::Export { title, .. } => format!(
            "Export \"{title}\" as a bundle? The bundle holds the report's key in clear: anyone who has the file can read the report. It proves the report is unaltered and in the ledger, without the server."
        ),
        Pending::Approve(g) => format!(
            "Let {} read this report? You sign the consent and wrap its key to them now. A copy they download cannot be recalled later.",
            g.reader_name
        ),
        Pending::Revoke(g) => format!(
            "Revoke {}'s access? Revoking stops new reads; a copy already downloaded cannot be recalled.",
            g.reader_name
        ),
    };
    dialog(app, frame, area, " Confirm ", &text);
}

fn pick_patient(app: &App, frame: &mut Frame, area: Rect, p: &PatientPicker) {
    let t = &app.theme;
    let bx = centered(area, 64, 14);
    let inner = boxed(
        frame,
        bx,
        Span::styled(
            if p.choose_doctor {
                " New booking 1/2: which patient? ".to_string()
            } else {
                format!(" Book {} for which patient? ", app.local(p.slot.start))
            },
            t.title,
        ),
        t.accent,
    );
    let [q, list, hint] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let mut field = p.query.clone();
    field.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
    field.set_placeholder_style(t.muted);
    frame.render_widget(&field, q);
    if let Some(e) = &p.error {
        frame.render_widget(Span::styled(format!("✗ {e}"), t.error), list);
    } else {
        patient_list(frame, t, &p.results, p.selected, list);
    }
    frame.render_widget(
        Span::styled(
            if p.choose_doctor {
                "type a name · ↑↓ choose · Enter next: the doctor · Esc close"
            } else {
                "type to search · ↑↓ choose · Enter book · Esc close"
            },
            t.muted,
        ),
        hint,
    );
}

/// Patients as "name  email" rows, one selected: the reception and upload pickers.
fn patient_list(
    frame: &mut Frame,
    t: &crate::tui::theme::Theme,
    patients: &[crate::api::PatientSummary],
    selected: usize,
    area: Rect,
) {
    let items: Vec<ListItem> = patients
        .iter()
        .map(|r| {
            ListItem::new(format!(
                "{:<24} {}",
                truncate(&r.name, 24),
                truncate(&r.email, 32)
            ))
        })
        .collect();
    let mut st = ListState::default().with_selected(Some(selected));
    frame.render_stateful_widget(
        List::new(items)
            .highlight_style(t.selection)
            .highlight_symbol("› "),
        area,
        &mut st,
    );
}

fn pick_doctor(app: &App, frame: &mut Frame, area: Rect, d: &DoctorStep) {
    let t = &app.theme;
    let bx = centered(area, 72, 14);
    let inner = boxed(
        frame,
        bx,
        Span::styled(
            format!(
                " New booking 2/2: {} with which doctor? ",
                truncate(&d.patient.1, 24)
            ),
            t.title,
        ),
        t.accent,
    );
    let [q, list, hint] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let mut field = app.doctors.query.clone();
    field.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
    field.set_placeholder_style(t.muted);
    frame.render_widget(&field, q);
    let items: Vec<ListItem> = app
        .doctors
        .rows
        .iter()
        .map(|r| {
            ListItem::new(format!(
                "{:<20} {:<16} {}",
                truncate(&r.doctor.name, 20),
                truncate(&r.doctor.specialty, 16),
                r.next_free
                    .as_ref()
                    .map(|s| app.local(s.start))
                    .unwrap_or_else(|| "no free slot".into())
            ))
        })
        .collect();
    let mut st = ListState::default().with_selected(Some(app.doctors.selected));
    frame.render_stateful_widget(
        List::new(items)
            .highlight_style(t.selection)
            .highlight_symbol("› "),
        list,
        &mut st,
    );
    frame.render_widget(
        Span::styled(
            "name or specialty · ↑↓ choose · Enter book the first free slot · Esc close",
            t.muted,
        ),
        hint,
    );
}

fn pick_upload_patient(app: &App, frame: &mut Frame, area: Rect, p: &UploadPicker) {
    let t = &app.theme;
    let bx = centered(area, 64, 14);
    let inner = boxed(
        frame,
        bx,
        Span::styled(
            match p.purpose {
                PickFor::Upload => " Upload a report for which patient? ",
                PickFor::Filter => " Whose reports? ",
            },
            t.title,
        ),
        t.accent,
    );
    let [list, hint] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    if let Some(e) = &p.error {
        frame.render_widget(Span::styled(format!("✗ {e}"), t.error), list);
    } else if p.loading {
        frame.render_widget(Span::styled("loading your patients…", t.muted), list);
    } else {
        patient_list(frame, t, &p.items, p.selected, list);
    }
    frame.render_widget(
        Span::styled(
            match p.purpose {
                PickFor::Upload => "↑↓ choose · Enter next: the file · Esc close",
                PickFor::Filter => "↑↓ choose · Enter list · Esc close",
            },
            t.muted,
        ),
        hint,
    );
}

fn path(app: &App, frame: &mut Frame, area: Rect, p: &PathEntry) {
    let t = &app.theme;
    let bx = centered(area, 72, 6);
    frame.render_widget(Clear, bx);
    let title = match &p.purpose {
        PathFor::Upload { name, .. } => {
            format!(" Upload for {}: which file? ", truncate(name, 30))
        }
        PathFor::Download { .. } => " Save the report (verified before it appears) to ".into(),
        PathFor::Export { .. } => " Write the bundle (it holds the report key) to ".into(),
        PathFor::ResendCode => " Mail a patient's code again: which request? ".into(),
        PathFor::UploadTitle { name, .. } => format!(" Title of the report for {name} "),
    };
    let block = Block::bordered()
        .title(Span::styled(title, t.title))
        .border_style(t.accent);
    let inner = block.inner(bx);
    frame.render_widget(block, bx);
    let [q, _, hint] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let mut field = p.input.clone();
    field.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
    field.set_placeholder_style(t.muted);
    frame.render_widget(&field, q);
    let h = match &p.purpose {
        PathFor::Upload { .. } => "Enter next: the title · Esc close · the same file again resumes",
        PathFor::Download { .. } => "Enter start · Esc close · nothing is overwritten",
        PathFor::Export { .. } => "Enter write · Esc close · nothing is overwritten",
        PathFor::ResendCode => "Enter mail it · Esc close · the id is in the patient's mail",
        PathFor::UploadTitle { .. } => "Enter upload · Esc close · sealed: only readers see it",
    };
    frame.render_widget(Span::styled(h, t.muted), hint);
}

fn grants(app: &App, frame: &mut Frame, area: Rect, g: &GrantsView) {
    let t = &app.theme;
    let bx = centered(area, 76, 14);
    let inner = boxed(
        frame,
        bx,
        Span::styled(
            // The title once checked; the short id until then.
            match app
                .reports
                .rows
                .iter()
                .find(|r| r.summary.id == g.report)
                .and_then(|r| r.check.title())
            {
                Some(title) => format!(" Grants of “{}” ", truncate(title, 50)),
                None => {
                    format!(" Grants of report {} ", &g.report.simple().to_string()[..8])
                }
            },
            t.title,
        ),
        t.accent,
    );
    let [list, note, hint] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    if let Some(e) = &g.error {
        frame.render_widget(Span::styled(format!("✗ {e}"), t.error), list);
    } else if g.loading {
        frame.render_widget(Span::styled("loading…", t.muted), list);
    } else if g.items.is_empty() {
        frame.render_widget(Span::styled("No grants for this report.", t.muted), list);
    } else {
        let items: Vec<ListItem> = g
            .items
            .iter()
            .map(|x| {
                ListItem::new(format!(
                    "{:<22} {:<10} asked {}",
                    truncate(&x.reader_name, 22),
                    x.status,
                    app.local(x.created_at)
                ))
            })
            .collect();
        let mut st = ListState::default().with_selected(Some(g.selected));
        frame.render_stateful_widget(
            List::new(items)
                .highlight_style(t.selection)
                .highlight_symbol("› "),
            list,
            &mut st,
        );
    }
    frame.render_widget(
        Span::styled(
            "A revoked grant cannot recall a copy already downloaded.",
            t.warn,
        ),
        note,
    );
    let h = match app.role() {
        Some(crate::api::Role::Patient) => {
            "a approve · x revoke · Enter confirm key wrap · Esc close"
        }
        _ => "Enter confirm key wrap (approved grants) · Esc close",
    };
    frame.render_widget(Span::styled(h, t.muted), hint);
}

fn wrap(app: &App, frame: &mut Frame, area: Rect, c: &crate::client::reports::WrapCheck) {
    let t = &app.theme;
    let bx = centered(area, 72, 11);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" Confirm the key wrap ", t.title),
        t.accent,
    );
    let approved = match c.grant.approved_at {
        Some(at) => format!("{} ({})", app.local(at), how_text(c)),
        None => how_text(c),
    };
    let lines = vec![
        Line::from("Wrap this report's key to the reader below? Checked in the ledger:"),
        Line::from(vec![
            Span::styled("Requester    ", t.muted),
            Span::raw(truncate(&c.reader_name, 50)),
        ]),
        Line::from(vec![
            Span::styled("Fingerprint  ", t.muted),
            Span::styled(c.reader_fingerprint.clone(), t.accent),
        ]),
        Line::from(vec![
            Span::styled("Report       ", t.muted),
            Span::raw(c.grant.report_id.to_string()),
        ]),
        Line::from(vec![
            Span::styled("Approved     ", t.muted),
            Span::raw(approved),
        ]),
        Line::from(""),
        Line::from(vec![
            Span::styled(" y ", t.selection),
            Span::raw(" wrap the key   "),
            Span::styled(" n ", t.selection),
            Span::raw(" no (Esc)"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

fn messages(app: &App, frame: &mut Frame, area: Rect, scroll: &u16) {
    let t = &app.theme;
    let bx = centered(area, 76, 18);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" Messages, newest first · Esc closes ", t.title),
        t.accent,
    );
    let lines: Vec<Line> = if app.status.history.is_empty() {
        vec![Line::from(Span::styled("No messages yet.", t.muted))]
    } else {
        app.status
            .history
            .iter()
            .rev()
            .skip(*scroll as usize)
            .map(|m| {
                Line::from(vec![
                    Span::styled(
                        m.at.with_timezone(&app.tz).format("%H:%M:%S ").to_string(),
                        t.muted,
                    ),
                    if m.error {
                        Span::styled(format!("✗ {}", crate::text::display(&m.text)), t.error)
                    } else {
                        Span::raw(crate::text::display(&m.text).into_owned())
                    },
                ])
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn palette(app: &App, frame: &mut Frame, area: Rect, p: &Palette) {
    let t = &app.theme;
    let bx = centered(area, 60, 14);
    let inner = boxed(frame, bx, Span::styled(" : command ", t.title), t.accent);
    let [q, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let mut field = p.input.clone();
    field.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_widget(&field, q);
    let items: Vec<ListItem> = palette_matches(&field_text(&p.input))
        .into_iter()
        .filter_map(|c: Cmd| keymap::info(c))
        .map(|i| {
            ListItem::new(format!(
                "{:<16} {:<30} {}",
                i.name,
                truncate(i.desc, 30),
                app.keys.keys_of(i.cmd)
            ))
        })
        .collect();
    let mut st = ListState::default().with_selected(Some(p.selected));
    frame.render_stateful_widget(List::new(items).highlight_style(t.selection), list, &mut st);
}

fn dialog(app: &App, frame: &mut Frame, area: Rect, title: &str, text: &str) {
    let t = &app.theme;
    // Names in the question are other people's text.
    let text = &*crate::text::display(text);
    // Taller for longer questions.
    let rows = text.chars().count().div_ceil(56) as u16;
    let bx = centered(area, 60, 5 + rows.max(2));
    let inner = boxed(
        frame,
        bx,
        Span::styled(title.to_string(), t.title),
        t.accent,
    );
    let lines = vec![
        Line::from(text.to_string()),
        Line::from(""),
        Line::from(vec![
            Span::styled(" y ", t.selection),
            Span::raw(" yes   "),
            Span::styled(" n ", t.selection),
            Span::raw(" no (Esc)"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
}

/// How a grant was approved, or that it is a re-wrap after the reader's key rotation.
fn how_text(c: &crate::client::reports::WrapCheck) -> String {
    match (c.how, c.rotation) {
        (Some(h), _) => format!("{h:?}"),
        (None, Some(i)) => format!("re-wrap after key rotation, ledger entry {i}"),
        (None, None) => "re-wrap".into(),
    }
}

/// Issue 15.3: a key rotation, loud, with the client's own text (name, date, authoriser,
/// both fingerprints) and the one way on: compare, then accept.
fn key_rotated(app: &App, frame: &mut Frame, area: Rect, r: &crate::tui::action::RotatedKey) {
    let t = &app.theme;
    let bx = centered(area, 76, 14);
    let inner = boxed(frame, bx, Span::styled(" KEY CHANGED ", t.error), t.error);
    let [body, hint] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let text = crate::text::display(r.text.trim_start_matches("KEY ROTATED: "));
    frame.render_widget(
        Paragraph::new(text.into_owned()).wrap(Wrap { trim: true }),
        body,
    );
    frame.render_widget(
        Span::styled(
            "a accept (fingerprints compared in person or by phone) · Esc close",
            t.muted,
        ),
        hint,
    );
}

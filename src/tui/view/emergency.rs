//! Issue 16: the break-glass form and the list of break-glass requests, drawn over the pane.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};

use crate::api::Role;
use crate::tui::state::{App, BreakGlass, BreakGlassField, EmergencyView, field_text};
use crate::tui::update::emergency::state_text;
use crate::tui::view::{boxed, centered, truncate};

/// The loud part: said before the doctor confirms, and under the form.
pub const RECORDED: &str =
    "This is recorded in the ledger and mailed at once to the patient and the administrators.";

pub fn break_glass(app: &App, frame: &mut Frame, area: Rect, b: &BreakGlass) {
    let t = &app.theme;
    let bx = centered(area, 72, 13);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" BREAK-GLASS · emergency access ", t.alarm),
        t.error,
    );
    // Patient, gap, reason, gap, the note (3 lines), the rest, the keys.
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .split(inner);
    if b.confirming || b.sending {
        let lines = vec![
            Line::from(vec![
                Span::styled("Break the glass on ", t.base),
                Span::styled(truncate(&field_text(&b.patient), 48), t.accent),
                Span::styled("?", t.base),
            ]),
            Line::from(""),
            Line::from(Span::styled(
                format!("Reason: “{}”", truncate(field_text(&b.reason).trim(), 58)),
                t.base,
            )),
            Line::from(""),
            Line::from(Span::styled(RECORDED, t.error)),
            Line::from(""),
            Line::from(Span::styled(
                "Use it only for a patient who needs care now and cannot give a code.",
                t.muted,
            )),
        ];
        let [body, hint] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), body);
        frame.render_widget(
            Span::styled(
                if b.sending {
                    "Sending…"
                } else {
                    "y break the glass · n back to the form"
                },
                t.muted,
            ),
            hint,
        );
        return;
    }
    let fields = [
        ("Patient", &b.patient, BreakGlassField::Patient),
        ("Reason", &b.reason, BreakGlassField::Reason),
    ];
    for (i, (label, f, which)) in fields.into_iter().enumerate() {
        let [l, v] =
            Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(rows[i * 2]);
        let focused = b.focus == which;
        frame.render_widget(
            Span::styled(label, if focused { t.accent } else { t.muted }),
            l,
        );
        let mut m = f.clone();
        if focused {
            m.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
        } else {
            m.set_cursor_style(Style::new());
        }
        m.set_placeholder_style(t.muted);
        frame.render_widget(&m, v);
    }
    let note = rows[4];
    match &b.message {
        Some(m) => frame.render_widget(
            Paragraph::new(Span::styled(format!("✗ {m}"), t.error)).wrap(Wrap { trim: true }),
            note,
        ),
        None => frame.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled(
                    "Team doctors only. An id reaches any patient; an email only your own.",
                    t.muted,
                )),
                Line::from(Span::styled(RECORDED, t.error)),
            ])
            .wrap(Wrap { trim: true }),
            note,
        ),
    }
    frame.render_widget(
        Span::styled(
            "Tab next field · Enter check and confirm · Esc close",
            t.muted,
        ),
        rows[6],
    );
}

pub fn emergencies(app: &App, frame: &mut Frame, area: Rect, v: &EmergencyView) {
    let t = &app.theme;
    let reader = app.session.as_ref().map(|s| s.user.role) == Some(Role::Doctor);
    let bx = centered(area, 78, 18);
    let inner = boxed(
        frame,
        bx,
        Span::styled(
            if reader {
                " Break-glass requests · yours "
            } else {
                " Break-glass requests · on you "
            },
            t.title,
        ),
        t.error,
    );
    let [list, detail, note, hint] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(2),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(inner);
    let rows = v.rows(reader);
    if v.loading && v.requests.is_empty() {
        frame.render_widget(Span::styled("loading…", t.muted), list);
    } else if rows.is_empty() {
        frame.render_widget(
            Span::styled(
                if reader {
                    "No break-glass requests of yours. B opens one."
                } else {
                    "No break-glass request on you."
                },
                t.muted,
            ),
            list,
        );
    } else {
        let items: Vec<ListItem> = rows
            .iter()
            .filter_map(|row| {
                let r = v.requests.get(row.request)?;
                Some(match row.report {
                    Some(id) => ListItem::new(Line::from(vec![
                        Span::styled("    report ", t.muted),
                        Span::styled(id.simple().to_string()[..8].to_string(), t.accent),
                        Span::styled("  Enter reads it (checked first)", t.muted),
                    ])),
                    None => {
                        let who = if reader {
                            format!("→ {}", truncate(&r.patient_name, 14))
                        } else {
                            format!("Dr {}", truncate(&r.reader_name, 13))
                        };
                        let style = match r.status.as_str() {
                            "waiting" | "released" => t.error,
                            _ => t.muted,
                        };
                        ListItem::new(Line::from(vec![
                            Span::styled(
                                format!(
                                    "{} {:<16} ",
                                    r.created_at.with_timezone(&app.tz).format("%m-%d %H:%M"),
                                    who
                                ),
                                t.base,
                            ),
                            Span::styled(truncate(&state_text(app, r), 44), style),
                        ]))
                    }
                })
            })
            .collect();
        let mut st = ListState::default().with_selected(Some(v.selected));
        frame.render_stateful_widget(
            List::new(items)
                .highlight_style(t.selection)
                .highlight_symbol("› "),
            list,
            &mut st,
        );
    }
    if let Some(r) = rows
        .get(v.selected)
        .and_then(|row| v.requests.get(row.request))
    {
        frame.render_widget(
            Paragraph::new(Span::styled(
                format!(
                    "Reason: “{}”  (ledger #{})",
                    truncate(&r.reason, 120),
                    r.ledger_index
                ),
                t.base,
            ))
            .wrap(Wrap { trim: true }),
            detail,
        );
    }
    let (text, style) = match (v.confirm_veto, &v.message) {
        (Some(_), _) => (
            "Veto this request? The doctor gets nothing; the request stays in the ledger."
                .to_string(),
            t.error,
        ),
        (None, Some(m)) => (m.clone(), t.warn),
        (None, None) if reader => (
            match rows
                .get(v.selected)
                .and_then(|row| v.requests.get(row.request))
                .map(|r| r.status.as_str())
            {
                Some("released") => "Released for one hour: Enter on a report checks the ledger \
                                     entry, then reads it here; nothing is written to disk.",
                Some("waiting") => "Released at its time unless the patient vetoes: Enter asks \
                                    the server again.",
                _ => "B breaks the glass on a patient; everything here is in the ledger.",
            }
            .into(),
            t.muted,
        ),
        (None, None) => (
            "A doctor of the emergency team asked to read your reports; you may veto while it waits."
                .into(),
            t.muted,
        ),
    };
    frame.render_widget(
        Paragraph::new(Span::styled(text, style)).wrap(Wrap { trim: true }),
        note,
    );
    let keys = match (v.confirm_veto, reader) {
        (Some(_), _) => "y veto · n back",
        (None, true) => "j/k move · Enter read / ask again · r refresh · Esc close",
        (None, false) => "j/k move · v veto · r refresh · Esc close",
    };
    frame.render_widget(Span::styled(keys, t.muted), hint);
}

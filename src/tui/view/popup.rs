//! Confirmations, the patient picker and the command palette, drawn over the pane.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, List, ListItem, ListState, Paragraph, Wrap};

use crate::tui::keymap::{self, Cmd};
use crate::tui::state::{App, Pending, Popup, field_text};
use crate::tui::update::{palette_matches, status_word};
use crate::tui::view::{centered, truncate};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(p) = &app.popup else { return };
    match p {
        Popup::Confirm(pending) => {
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
            };
            dialog(app, frame, area, " Confirm ", &text);
        }
        Popup::ConfirmQuit => dialog(
            app,
            frame,
            area,
            " Quit? ",
            "Requests are still running. Quit anyway?",
        ),
        Popup::PickPatient(p) => {
            let bx = centered(area, 64, 14);
            frame.render_widget(Clear, bx);
            let block = Block::bordered()
                .title(Span::styled(
                    format!(" Book {} for which patient? ", app.local(p.slot.start)),
                    t.title,
                ))
                .border_style(t.accent);
            let inner = block.inner(bx);
            frame.render_widget(block, bx);
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
                let items: Vec<ListItem> = p
                    .results
                    .iter()
                    .map(|r| {
                        ListItem::new(format!(
                            "{:<24} {}",
                            truncate(&r.name, 24),
                            truncate(&r.email, 32)
                        ))
                    })
                    .collect();
                let mut st = ListState::default().with_selected(Some(p.selected));
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
                    "type to search · ↑↓ choose · Enter book · Esc close",
                    t.muted,
                ),
                hint,
            );
        }
        Popup::Palette(p) => {
            let bx = centered(area, 60, 14);
            frame.render_widget(Clear, bx);
            let block = Block::bordered()
                .title(Span::styled(" : command ", t.title))
                .border_style(t.accent);
            let inner = block.inner(bx);
            frame.render_widget(block, bx);
            let [q, list] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
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
            frame.render_stateful_widget(
                List::new(items).highlight_style(t.selection),
                list,
                &mut st,
            );
        }
    }
}

fn dialog(app: &App, frame: &mut Frame, area: Rect, title: &str, text: &str) {
    let t = &app.theme;
    let bx = centered(area, 60, 7);
    frame.render_widget(Clear, bx);
    let block = Block::bordered()
        .title(Span::styled(title.to_string(), t.title))
        .border_style(t.accent);
    let inner = block.inner(bx);
    frame.render_widget(block, bx);
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

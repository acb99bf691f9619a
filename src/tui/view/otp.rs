//! Codes waiting to be entered: what each unlocks, tries left, minutes to expiry.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};

use crate::tui::keymap::Cmd;
use crate::tui::state::App;
use crate::tui::view::{pane_block, truncate};

/// `in 14 min`, or `expired`: minutes, so the pane redraws at most once a minute.
pub fn expires_in(app: &App, at: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (at - app.clock.now).num_seconds();
    if secs <= 0 {
        "expired".into()
    } else {
        format!("in {} min", (secs + 59) / 60)
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let o = &app.otp;
    let block = pane_block(
        app,
        format!("Codes to enter · {}", o.items.len()),
        o.loading,
        o.error.as_deref(),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [list, entry] = Layout::vertical([Constraint::Min(1), Constraint::Length(4)]).areas(inner);
    if o.items.is_empty() && !o.loading {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "No code is waiting. A mailed code appears here until it is entered or expires.",
                t.muted,
            )),
            list,
        );
        return;
    }
    let rows: Vec<Row> = o
        .items
        .iter()
        .map(|p| {
            let tries = Span::styled(
                match p.tries_left {
                    1 => "1 try left".to_string(),
                    n => format!("{n} tries left"),
                },
                if p.tries_left <= 1 { t.warn } else { t.base },
            );
            // Two lines: what it unlocks, then what tells it apart from the others (#14.12).
            Row::new(vec![
                Cell::from(Text::from(vec![
                    Line::raw(truncate(&crate::text::display(&p.unlocks), 50)),
                    Line::styled(p.request_words(app.tz), t.muted),
                ])),
                Cell::from(tries),
                Cell::from(expires_in(app, p.expires_at)),
            ])
            .height(2)
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(50),
            Constraint::Length(13),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["Unlocks", "Tries", "Expires"]).style(t.title))
    .row_highlight_style(t.selection)
    .highlight_symbol("› ");
    let mut state = TableState::default().with_selected(Some(o.selected));
    frame.render_stateful_widget(table, list, &mut state);

    let b = Block::new().borders(Borders::TOP).border_style(t.muted);
    let e = b.inner(entry);
    frame.render_widget(b, entry);
    let [what, field] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(e);
    if let Some(p) = o.items.get(o.selected) {
        frame.render_widget(
            Line::from(vec![
                Span::styled("Code for: ", t.muted),
                Span::raw(truncate(
                    &format!(
                        "{} ({})",
                        crate::text::display(&p.unlocks),
                        crate::units::short_id(&p.request_id)
                    ),
                    66,
                )),
            ]),
            what,
        );
    }
    if o.editing {
        let [label, input] =
            Layout::horizontal([Constraint::Length(7), Constraint::Length(12)]).areas(field);
        frame.render_widget(Span::styled("Code: ", t.accent), label);
        let mut f = o.code.clone();
        f.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
        f.set_placeholder_style(t.muted);
        frame.render_widget(&f, input);
    } else {
        frame.render_widget(
            Span::styled(
                format!(
                    "{} type the code · {} mail it again",
                    app.keys.first_key(Cmd::Select),
                    app.keys.first_key(Cmd::Resend)
                ),
                t.muted,
            ),
            field,
        );
    }
}

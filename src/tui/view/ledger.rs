//! The ledger as this client verified it: tree size, head, pinned key, entries about the user.

use chrono::TimeZone;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

use crate::tui::state::App;
use crate::tui::view::{pane_block, truncate};

pub fn time(app: &App, ms: i64) -> String {
    match chrono::Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t
            .with_timezone(&app.tz)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => "?".into(),
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let l = &app.ledger;
    let block = pane_block(app, "Ledger".into(), l.syncing || l.entries_loading, None);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let witness_line = l.head.as_ref().is_some_and(|h| h.cosigned_by.is_some());
    let head_rows = if witness_line { 6 } else { 5 };
    let [head, list] =
        Layout::vertical([Constraint::Length(head_rows), Constraint::Min(1)]).areas(inner);
    let mut lines = Vec::new();
    if let Some(why) = &l.failed {
        lines.push(Line::from(Span::styled(
            format!("✗ CHECK FAILED: {}", truncate(why, 60)),
            t.error,
        )));
    }
    match &l.head {
        Some(h) => {
            lines.push(Line::from(vec![
                Span::styled("Tree size      ", t.muted),
                Span::raw(h.tree_size.to_string()),
                Span::styled(
                    if l.failed.is_none() {
                        "  ✓ verified"
                    } else {
                        ""
                    },
                    t.ok,
                ),
            ]));
            lines.push(Line::from(vec![
                Span::styled("Verified head  ", t.muted),
                Span::raw(format!("root {}…  signed {}", h.root, time(app, h.time_ms))),
            ]));
            lines.push(Line::from(vec![
                Span::styled("Pinned key     ", t.muted),
                Span::raw(truncate(&h.key, 60)),
            ]));
            // Issue 11: which configured witnesses vouch for this head.
            if let Some(by) = &h.cosigned_by {
                lines.push(Line::from(vec![
                    Span::styled("Witnesses      ", t.muted),
                    if by.is_empty() {
                        Span::styled("no configured witness cosigned this head", t.warn)
                    } else {
                        Span::styled(format!("cosigned by {}", by.join(", ")), t.ok)
                    },
                ]));
            }
            if h.pinned_now {
                lines.push(Line::from(Span::styled(
                    "pinned on first use: compare it with the key the clinic publishes",
                    t.warn,
                )));
            }
        }
        None if l.failed.is_none() => lines.push(Line::from(Span::styled(
            "No head verified yet (r syncs).",
            t.muted,
        ))),
        None => {}
    }
    frame.render_widget(Paragraph::new(lines), head);
    let shown = l.shown();
    let title = match &l.trail {
        Some((_, name)) => format!(
            " Trail of {} · {} · Esc: all ",
            truncate(&crate::text::display(name), 40),
            shown.len()
        ),
        None => " Recent entries about you ".into(),
    };
    let b = Block::new()
        .borders(Borders::TOP)
        .border_style(t.muted)
        .title(Span::styled(title, t.title));
    let mut inner = b.inner(list);
    frame.render_widget(b, list);
    let filter = crate::tui::state::field_text(&l.filter);
    if l.filtering || !filter.is_empty() {
        let [f, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
        let mut field = l.filter.clone();
        field.set_cursor_style(if l.filtering {
            ratatui::style::Style::new().add_modifier(ratatui::style::Modifier::REVERSED)
        } else {
            ratatui::style::Style::new()
        });
        field.set_placeholder_style(t.muted);
        let [label, input] =
            Layout::horizontal([Constraint::Length(3), Constraint::Min(1)]).areas(f);
        frame.render_widget(Span::styled(" / ", t.accent), label);
        frame.render_widget(&field, input);
        inner = rest;
    }
    if shown.is_empty() {
        frame.render_widget(
            Span::styled(
                if l.entries_loading {
                    "checking entries…"
                } else {
                    "None in the latest entries."
                },
                t.muted,
            ),
            inner,
        );
        return;
    }
    let items: Vec<ListItem> = shown
        .iter()
        .map(|e| {
            ListItem::new(format!(
                "#{:<5} {}  {}",
                e.index,
                time(app, e.time_ms),
                truncate(&e.text, 46)
            ))
        })
        .collect();
    let mut st = ListState::default().with_selected(Some(l.selected));
    frame.render_stateful_widget(
        List::new(items)
            .highlight_style(t.selection)
            .highlight_symbol("› "),
        inner,
        &mut st,
    );
}

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
        None if l.filter.is_empty() => " Recent entries about you ".into(),
        None => format!(
            " Recent entries about you · {} of {} ",
            shown.len(),
            l.entries.len()
        ),
    };
    let b = Block::new()
        .borders(Borders::TOP)
        .border_style(t.muted)
        .title(Span::styled(title, t.title));
    let inner = b.inner(list);
    frame.render_widget(b, list);
    let inner = l.filter.render(t, frame, inner);
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
            let item = ListItem::new(format!(
                "#{:<5} {}  {}",
                e.index,
                time(app, e.time_ms),
                truncate(&e.text, 46)
            ));
            // Issue 16: every break-glass access stands out.
            if e.text.starts_with(crate::tui::tasks::BREAK_GLASS) {
                item.style(t.error)
            } else {
                item
            }
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

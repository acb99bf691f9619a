//! The demo outbox: the mails the embedded server "sent", so a newcomer can read codes.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};

use crate::tui::state::App;
use crate::tui::view::{pane_block, truncate};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let m = &app.mailbox;
    let block = pane_block(
        app,
        format!("Mailbox (demo outbox) · {}", m.items.len()),
        m.loading,
        m.error.as_deref(),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if m.items.is_empty() && !m.loading {
        frame.render_widget(Paragraph::new(Span::styled("No mail yet.", t.muted)), inner);
        return;
    }
    let list_h = (inner.height / 3).max(3);
    let [top, body] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(1)]).areas(inner);
    let items: Vec<ListItem> = m
        .items
        .iter()
        .map(|x| {
            ListItem::new(format!(
                "{:<28} {}",
                truncate(&x.to, 28),
                truncate(&x.subject, 44)
            ))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(m.selected));
    frame.render_stateful_widget(
        List::new(items)
            .highlight_style(t.selection)
            .highlight_symbol("› "),
        top,
        &mut state,
    );
    if let Some(mail) = m.items.get(m.selected) {
        // Mails carry other people's text (names, titles): shown escaped.
        let text = crate::text::display_lines(&format!(
            "To: {}\nDate: {}\nSubject: {}\n\n{}",
            mail.to, mail.date, mail.subject, mail.body
        ));
        let block = Block::new().borders(Borders::TOP).border_style(t.muted);
        let block = if m.body_scroll > 0 {
            block.title(Span::styled(
                format!(" line {} · PgUp back ", m.body_scroll + 1),
                t.muted,
            ))
        } else {
            block
        };
        frame.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .scroll((m.body_scroll, 0))
                .block(block),
            body,
        );
    }
}

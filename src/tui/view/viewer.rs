//! The report viewer: what the report is (type, size, SHA-256) over its text, or over why
//! it is not shown as text. It covers the pane; tabs, hints and status stay visible.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::tui::state::App;
use crate::tui::view::reports::human;
use crate::tui::view::truncate;
use crate::tui::viewer::{Body, Viewer};

pub fn render(app: &App, v: &Viewer, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    // Between the tab bar and the hint line (and the message line, if any).
    let bottom = if app.status.error.is_some() { 3 } else { 2 };
    let area = Rect {
        y: area.y.saturating_add(1),
        height: area.height.saturating_sub(1 + bottom),
        ..area
    };
    if area.height < 4 || area.width < 20 {
        return;
    }
    frame.render_widget(Clear, area);
    let lines = v.lines();
    let block = Block::bordered()
        .title(Span::styled(
            format!(" {} ", truncate(&v.title, area.width as usize - 24)),
            t.title,
        ))
        .title(
            Line::from(Span::styled(
                format!(" {} · {} ", v.kind, human(v.len)),
                t.muted,
            ))
            .right_aligned(),
        )
        .title_bottom(Span::styled(
            format!(
                " line {}/{lines} · read in memory, nothing on disk · Esc closes ",
                (v.scroll + 1).min(lines)
            ),
            t.muted,
        ))
        .border_style(t.accent);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let head_h = 2 + u16::from(v.origin.is_some());
    let [head, body] =
        Layout::vertical([Constraint::Length(head_h), Constraint::Min(1)]).areas(inner);
    let mut head_lines = vec![
        Line::from(vec![
            Span::styled("file ", t.muted),
            Span::raw(truncate(&v.file_name, inner.width as usize - 5)),
        ]),
        Line::from(vec![
            Span::styled("SHA-256 ", t.muted),
            Span::raw(v.sha256.as_str()),
        ]),
    ];
    if let Some(o) = &v.origin {
        head_lines.push(Line::from(Span::styled(
            truncate(o, inner.width as usize),
            t.ok,
        )));
    }
    frame.render_widget(Paragraph::new(head_lines), head);
    match &v.body {
        // Only the lines on screen are borrowed into the frame: no copy of the whole text.
        Body::Text { markdown, text } => {
            let shown: Vec<Line> = text
                .lines()
                .skip(v.scroll)
                .take(body.height as usize)
                .map(|l| {
                    if *markdown && l.starts_with('#') {
                        Line::from(Span::styled(l, t.title))
                    } else {
                        Line::raw(l)
                    }
                })
                .collect();
            frame.render_widget(Paragraph::new(shown).wrap(Wrap { trim: false }), body);
        }
        Body::Summary(why) => frame.render_widget(
            Paragraph::new(vec![Line::from(""), Line::from(Span::styled(*why, t.warn))])
                .wrap(Wrap { trim: true }),
            body,
        ),
    }
}

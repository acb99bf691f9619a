//! Doctors: the search line and the results with each doctor's next free slot.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::tui::state::App;
use crate::tui::view::{pane_block, truncate};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let d = &app.doctors;
    let title = format!("Doctors · {}", d.rows.len());
    let block = pane_block(app, title, d.loading, d.error.as_deref());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [search, list] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    let [label, field] =
        Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(Rect {
            height: 1,
            ..search
        });
    frame.render_widget(
        Span::styled(" search ", if d.editing { t.accent } else { t.muted }),
        label,
    );
    let mut q = d.query.clone();
    q.set_cursor_style(if d.editing {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new()
    });
    q.set_placeholder_style(t.muted);
    frame.render_widget(&q, field);
    if d.rows.is_empty() && !d.loading {
        let msg = if d.shown_query.is_empty() {
            "No doctors yet.".to_string()
        } else {
            format!("No doctor matches “{}”.", truncate(&d.shown_query, 40))
        };
        frame.render_widget(Paragraph::new(Span::styled(msg, t.muted)), list);
        return;
    }
    let rows: Vec<Row> = d
        .rows
        .iter()
        .map(|r| {
            let next = match &r.next_free {
                Some(s) => Cell::from(app.local(s.start)),
                None => Cell::from(Span::styled("none in 2 weeks", t.muted)),
            };
            Row::new(vec![
                Cell::from(truncate(&r.doctor.name, 22)),
                Cell::from(truncate(&r.doctor.specialty, 18)),
                next,
                Cell::from(Span::styled(fingerprint(&r.doctor.public_keys), t.muted)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(23),
            Constraint::Length(19),
            Constraint::Length(21),
            Constraint::Min(8),
        ],
    )
    .header(Row::new(vec!["Name", "Specialty", "Next free slot", "Key"]).style(t.title))
    .row_highlight_style(t.selection)
    .highlight_symbol("› ");
    // The full fingerprint of the selected doctor: the column may be cut on narrow screens.
    let [list, footer] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(list);
    let mut state = TableState::default().with_selected(Some(d.selected));
    frame.render_stateful_widget(table, list, &mut state);
    if let Some(r) = d.rows.get(d.selected) {
        frame.render_widget(
            Paragraph::new(Span::styled(
                format!(
                    " key of {}: {}",
                    truncate(&r.doctor.name, 30),
                    fingerprint(&r.doctor.public_keys)
                ),
                t.muted,
            )),
            footer,
        );
    }
}

/// The doctor's key fingerprint: the one `seal::fingerprint` computes over both public keys,
/// the same the CLI and every confirmation show (issue 11), to compare out of band.
pub fn fingerprint(k: &crate::seal::PublicKeys) -> String {
    crate::seal::fingerprint(k)
}

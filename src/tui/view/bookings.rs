//! Bookings the user may see: own (patient, doctor) or all (reception).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use crate::api::BookingStatus;
use crate::tui::state::App;
use crate::tui::update::status_word;
use crate::tui::view::{pane_block, truncate};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let b = &app.bookings;
    let block = pane_block(
        app,
        format!("Bookings · {}", b.filter.count(b.items.len(), b.all.len())),
        b.loading,
        b.error.as_deref(),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let inner = b.filter.render(t, frame, inner);
    if b.items.is_empty() && !b.filter.text().is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "No booking matches the filter (Esc clears it).",
                t.muted,
            )),
            inner,
        );
        return;
    }
    if b.items.is_empty() && !b.loading {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "No bookings in the last 30 or next 90 days.",
                t.muted,
            )),
            inner,
        );
        return;
    }
    let rows: Vec<Row> = b
        .items
        .iter()
        .map(|x| {
            let style = match x.status {
                BookingStatus::Booked => t.base,
                BookingStatus::CheckedIn => t.warn,
                BookingStatus::Completed => t.ok,
                BookingStatus::Cancelled | BookingStatus::NoShow => t.muted,
            };
            Row::new(vec![
                Cell::from(app.local(x.start)),
                Cell::from(truncate(&x.doctor_name, 18)),
                Cell::from(truncate(&x.patient_name, 18)),
                Cell::from(Span::styled(status_word(x.status), style)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(21),
            Constraint::Length(19),
            Constraint::Length(19),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["When", "Doctor", "Patient", "Status"]).style(t.title))
    .row_highlight_style(t.selection)
    .highlight_symbol("› ");
    let mut state = TableState::default().with_selected(Some(b.selected));
    frame.render_stateful_widget(table, inner, &mut state);
}

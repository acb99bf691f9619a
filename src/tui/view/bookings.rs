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
        if crate::tui::state::field_text(&b.filter).is_empty() {
            format!("Bookings · {}", b.items.len())
        } else {
            format!("Bookings · {} of {}", b.items.len(), b.all.len())
        },
        b.loading,
        b.error.as_deref(),
    );
    let mut inner = block.inner(area);
    frame.render_widget(block, area);
    let filter = crate::tui::state::field_text(&b.filter);
    if b.filtering || !filter.is_empty() {
        let [f, rest] =
            ratatui::layout::Layout::vertical([Constraint::Length(1), Constraint::Min(1)])
                .areas(inner);
        let mut field = b.filter.clone();
        if b.filtering {
            field.set_cursor_style(
                ratatui::style::Style::new().add_modifier(ratatui::style::Modifier::REVERSED),
            );
        } else {
            field.set_cursor_style(ratatui::style::Style::new());
        }
        field.set_placeholder_style(t.muted);
        let [label, input] =
            ratatui::layout::Layout::horizontal([Constraint::Length(3), Constraint::Min(1)])
                .areas(f);
        frame.render_widget(Span::styled(" / ", t.accent), label);
        frame.render_widget(&field, input);
        inner = rest;
    }
    if b.items.is_empty() && !filter.is_empty() {
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

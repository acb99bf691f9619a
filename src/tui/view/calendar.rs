//! Calendar: the month grid (free slots per day, today marked, days off dimmed) and the
//! selected day's slots and bookings.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};

use crate::tui::state::{App, DayRow};
use crate::tui::update::status_word;
use crate::tui::view::{pane_block, truncate};

fn weekday_key(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let c = &app.calendar;
    let title = match &c.doctor {
        Some(d) => format!(
            "Calendar · {} ({})",
            truncate(&d.name, 24),
            truncate(&d.specialty, 18)
        ),
        None => "Calendar".into(),
    };
    let block = pane_block(app, title, c.loading, c.error.as_deref());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if c.doctor.is_none() {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "Choose a doctor in the Doctors pane and press Enter.",
                t.muted,
            )),
            inner,
        );
        return;
    }
    let [grid, day] =
        Layout::horizontal([Constraint::Length(44), Constraint::Min(20)]).areas(inner);
    render_grid(app, frame, grid);
    render_day(app, frame, day);
}

fn render_grid(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let c = &app.calendar;
    let today = app.clock.today;
    let first = c.month_start(today);
    let selected = c.selected.unwrap_or(today);
    let counts = app.free_per_day();
    let avail = c.data.as_ref().and_then(|d| d.availability.as_ref());
    let mut lines = vec![
        Line::from(Span::styled(format!(" {}", first.format("%B %Y")), t.title)),
        Line::from(Span::styled(
            "   Mo    Tu    We    Th    Fr    Sa    Su",
            t.muted,
        )),
    ];
    let offset = first.weekday().num_days_from_monday() as i64;
    let mut d = first - Duration::days(offset);
    // Two rows per week: the day numbers, then the free-slot counts under them.
    for _ in 0..6 {
        let mut days = Vec::new();
        let mut counts_row = Vec::new();
        for _ in 0..7 {
            if d.month() != first.month() {
                days.push(Span::raw("      "));
                counts_row.push(Span::raw("      "));
            } else {
                let n = counts.get(&d).copied().unwrap_or(0);
                let off = match avail {
                    Some(a) => {
                        a.availability.days_off.contains(&d)
                            || !a
                                .availability
                                .weekly
                                .iter()
                                .any(|b| b.weekday == weekday_key(d.weekday()))
                    }
                    None => false,
                };
                let mark = if d == today { "•" } else { " " };
                // The same words for every role: a number of free slots, "–" for none free;
                // "off" where the role may read the doctor's days off (staff).
                let count = if off {
                    "off".to_string()
                } else if d < today || c.data.is_none() {
                    String::new()
                } else if n == 0 {
                    "–".to_string()
                } else {
                    n.to_string()
                };
                let dim = off || d < today || (n == 0 && c.data.is_some());
                let mut style = if dim { t.muted } else { t.base };
                if d == today {
                    style = style.add_modifier(Modifier::BOLD);
                }
                if d == selected {
                    style = t.selection;
                }
                days.push(Span::styled(format!(" {mark}{:>2} ", d.day()), style));
                days.push(Span::raw(" "));
                let count_style = if n > 0 && !off { t.ok } else { t.muted };
                counts_row.push(Span::styled(format!("{count:>4}  "), count_style));
            }
            d += Duration::days(1);
        }
        if days.iter().all(|s| s.content.trim().is_empty()) {
            break;
        }
        lines.push(Line::from(days));
        lines.push(Line::from(counts_row));
    }
    lines.push(Line::from(Span::styled(
        " • today · under each day: its free slots",
        t.muted,
    )));
    lines.push(Line::from(Span::styled(
        if avail.is_some() {
            " – none free · off: the doctor's day off"
        } else {
            " – no free slot (all booked, or a day off)"
        },
        t.muted,
    )));
    frame.render_widget(Paragraph::new(lines), area);
}

fn render_day(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let c = &app.calendar;
    let day: NaiveDate = c.selected.unwrap_or(app.clock.today);
    let rows = app.day_rows();
    let block = Block::new()
        .borders(Borders::LEFT)
        .border_style(t.muted)
        .title(Span::styled(
            format!(" {} ", day.format("%a %Y-%m-%d")),
            if c.in_day { t.accent } else { t.title },
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if rows.is_empty() {
        let msg = if c.data.is_none() {
            ""
        } else {
            "Nothing free or booked this day."
        };
        frame.render_widget(
            Paragraph::new(Span::styled(format!(" {msg}"), t.muted)),
            inner,
        );
        return;
    }
    let width = inner.width.saturating_sub(10) as usize;
    let items: Vec<ListItem> = rows
        .iter()
        .map(|r| {
            let time = r.start().with_timezone(&app.tz).format("%H:%M").to_string();
            match r {
                DayRow::Free(_) => ListItem::new(Line::from(vec![
                    Span::raw(format!("{time} ")),
                    Span::styled("free", t.ok),
                ])),
                DayRow::Booked(b) => ListItem::new(Line::from(vec![
                    Span::raw(format!("{time} ")),
                    Span::styled(
                        truncate(
                            &format!("{} · {}", b.patient_name, status_word(b.status)),
                            width,
                        ),
                        t.warn,
                    ),
                ])),
            }
        })
        .collect();
    let mut state = ListState::default().with_selected(c.in_day.then_some(c.row));
    frame.render_stateful_widget(
        List::new(items)
            .highlight_style(t.selection)
            .highlight_symbol("› "),
        inner,
        &mut state,
    );
}

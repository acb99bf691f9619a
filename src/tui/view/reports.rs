//! Reports: date, doctor, patient, the title decrypted here once checked, size and where each
//! stands; the running transfer's bar below.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Gauge, Paragraph, Row, Table, TableState, Wrap};

use crate::tui::rate::{Speed, left_words};
use crate::tui::state::{App, Check, TransferKind};
use crate::tui::view::{pane_block, truncate};

/// `912 B`, `4.0 KiB`, `1.2 MiB`: binary units, labelled as such, as the CLI prints them.
pub fn human(n: u64) -> String {
    crate::units::bytes(n)
}

/// The word for where a report stands, and whether it is bad news.
pub fn state_word(app: &App, row: &crate::tui::state::ReportRow) -> (String, bool) {
    let (check, status, readable) = (
        &row.check,
        row.summary.status.as_str(),
        row.summary.readable,
    );
    match check {
        Check::Failed(_) => ("FAILED ✗".into(), true),
        Check::Verified { .. } => ("verified ✓".into(), false),
        _ if status == "awaiting_release" => ("awaiting code".into(), false),
        // Opened but not committed: an upload that stopped; the same file again resumes it.
        _ if status == "open" => ("incomplete".into(), true),
        _ if !readable && app.reports.consent_asked.contains(&row.summary.id) => {
            ("consent requested".into(), false)
        }
        _ if !readable => ("no key".into(), false),
        _ => ("released".into(), false),
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let r = &app.reports;
    let visible = r.visible(app.tz);
    let count = r.filter.count(visible.len(), r.rows.len());
    let block = pane_block(
        app,
        match &r.patient {
            Some((_, name)) => format!("Reports of {} · {count} · Esc: all", truncate(name, 30)),
            None => format!("Reports · {count}"),
        },
        r.loading,
        r.error.as_deref(),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let inner = r.filter.render(t, frame, inner);
    let bar_h = if app.transfer.is_some() { 2 } else { 0 };
    let [list, detail, bar] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(2),
        Constraint::Length(bar_h),
    ])
    .areas(inner);
    if r.rows.is_empty() && !r.loading {
        frame.render_widget(
            Paragraph::new(Span::styled("No reports yet.", t.muted)),
            list,
        );
    } else {
        let rows: Vec<Row> = visible
            .iter()
            .map(|i| &r.rows[*i])
            .map(|x| {
                let s = &x.summary;
                let (word, bad) = state_word(app, x);
                let style = if bad {
                    t.error
                } else if matches!(x.check, Check::Verified { .. }) {
                    t.ok
                } else if s.status == "awaiting_release" {
                    t.warn
                } else {
                    t.base
                };
                let title = match (x.check.title(), r.stopped_file(x)) {
                    (Some(title), _) => truncate(title, 15),
                    (None, Some(file)) => truncate(&crate::text::display(file), 15),
                    (None, None) => "…".into(),
                };
                Row::new(vec![
                    Cell::from(
                        s.created_at
                            .with_timezone(&app.tz)
                            .format("%Y-%m-%d")
                            .to_string(),
                    ),
                    Cell::from(truncate(&s.author_name, 10)),
                    Cell::from(truncate(&s.patient_name, 10)),
                    Cell::from(title),
                    Cell::from(human(s.plaintext_len)),
                    Cell::from(Span::styled(word, style)),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Min(8),
            ],
        )
        .header(
            Row::new(vec!["Date", "Doctor", "Patient", "Title", "Size", "State"]).style(t.title),
        )
        .row_highlight_style(t.selection)
        .highlight_symbol("› ");
        let mut state = TableState::default().with_selected(Some(r.selected));
        frame.render_stateful_widget(table, list, &mut state);
    }
    if let Some(row) = r.selected_row(app.tz) {
        let line = match &row.check {
            Check::Failed(why) => Line::from(Span::styled(format!("✗ FAILED: {why}"), t.error)),
            Check::Verified { .. } => Line::from(Span::styled(
                "✓ signature, ledger entries, key commitment and every chunk verified",
                t.ok,
            )),
            Check::Opened { .. } => Line::from(Span::styled(
                "signature, ledger entries and key checked; v checks every chunk too",
                t.muted,
            )),
            Check::Unchecked if row.summary.status == "open" => Line::from(Span::styled(
                match r.stopped_file(row) {
                    Some(file) => format!(
                        "upload of {} stopped: upload the same file again to resume it",
                        crate::text::display(file)
                    ),
                    None => "upload stopped: upload the same file again to resume it".into(),
                },
                t.warn,
            )),
            Check::Unchecked if row.summary.status == "awaiting_release" => Line::from(
                Span::styled("waits for the patient's mailed code (OTP pane)", t.muted),
            ),
            Check::Unchecked => Line::from(Span::styled("…", t.muted)),
        };
        // Issue 16: a checked station report says who submitted it, for whom.
        let origin = match &row.check {
            Check::Opened { .. } | Check::Verified { .. } => r.origins.get(&row.summary.id),
            _ => None,
        };
        let lines = match origin {
            Some(o) => vec![
                line,
                Line::from(Span::styled(truncate(o, detail.width as usize), t.ok)),
            ],
            None => vec![line],
        };
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), detail);
    }
    if let Some(tr) = &app.transfer {
        let [label, gauge] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(bar);
        // The recent rate (a sliding window), "stalled" when bytes stopped coming.
        let speed = tr.meter.speed(app.clock.now, tr.total);
        let rate = match speed {
            Speed::Rate { bytes_per_sec, .. } => format!("{}/s", human(bytes_per_sec as u64)),
            Speed::Stalled => "stalled".into(),
            Speed::Unknown => "— /s".into(),
        };
        let left = left_words(speed);
        let arrow = match tr.kind {
            TransferKind::Upload => "↑",
            TransferKind::Download => "↓",
        };
        // At most 77 columns: 18 for the name, 8 per size, 10 for the rate.
        // A resumed upload reports nothing until it re-read what was sent: no zeros.
        let text = if tr.total == 0 {
            format!(
                "{arrow} {} · resuming: checking what was already sent… · {} stop",
                truncate(&tr.label, 18),
                app.keys.first_key(crate::tui::keymap::Cmd::CancelBooking),
            )
        } else {
            format!(
                "{arrow} {} · {} / {} · {rate} · {left} · {} stop",
                truncate(&tr.label, 18),
                human(tr.done),
                human(tr.total),
                app.keys.first_key(crate::tui::keymap::Cmd::CancelBooking),
            )
        };
        frame.render_widget(Span::styled(text, t.accent), label);
        let ratio = if tr.total == 0 {
            0.0
        } else {
            (tr.done as f64 / tr.total as f64).clamp(0.0, 1.0)
        };
        frame.render_widget(
            Gauge::default()
                .gauge_style(t.accent)
                .ratio(ratio)
                .label(format!("{:.0}%", ratio * 100.0)),
            gauge,
        );
    }
}

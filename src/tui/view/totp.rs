//! The login's TOTP screens (issue 15): the code step, the enrolment with its QR code (drawn
//! with half blocks, 41 × 21 cells for an `otpauth://` URI: it fits 80 × 24 beside the text),
//! and the recovery codes, shown once.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::tui::state::App;
use crate::tui::view::{boxed, centered};

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    if let Some(r) = &app.totp.recovery {
        render_recovery(app, frame, area, &r.codes);
    } else if app.totp.enrolment.is_some() {
        render_enrolment(app, frame, area);
    } else {
        render_code(app, frame, area);
    }
}

/// The code field and the message under it, as the login screen draws its fields.
fn code_lines(app: &App, frame: &mut Frame, field: Rect, message: Rect) {
    let t = &app.theme;
    let [l, f] = Layout::horizontal([Constraint::Length(8), Constraint::Min(1)]).areas(field);
    frame.render_widget(Span::styled("  code: ", t.accent), l);
    let mut mask = app.totp.code.0.mask.clone();
    mask.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
    mask.set_placeholder_style(t.muted);
    mask.set_style(Style::new().add_modifier(Modifier::UNDERLINED));
    frame.render_widget(&mask, f);
    if let Some(m) = &app.totp.message {
        let style = if app.totp.busy { t.warn } else { t.base };
        frame.render_widget(
            Paragraph::new(Span::styled(crate::text::display(m), style)).wrap(Wrap { trim: true }),
            message,
        );
    }
}

fn render_code(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let bx = centered(area, 68, 10);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" clinvault — second factor ", t.title),
        t.muted,
    );
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(1),
    ])
    .split(inner);
    frame.render_widget(
        Line::from(vec![
            Span::styled("  account: ", t.muted),
            Span::raw(crate::text::display(&app.totp.email)),
        ]),
        rows[0],
    );
    frame.render_widget(
        Span::styled(
            "  The code from your authenticator app, or a recovery code:",
            t.base,
        ),
        rows[1],
    );
    code_lines(app, frame, rows[2], rows[4]);
    frame.render_widget(
        Span::styled("Enter log in · Esc back to the password", t.muted),
        rows[5],
    );
}

/// Light modules drawn in white on black, so the code reads right on any terminal theme;
/// the mono theme (NO_COLOR) leaves the terminal's own colours.
fn qr_style(app: &App) -> Style {
    if app.theme.accent.fg.is_some() {
        Style::new().fg(Color::White).bg(Color::Black)
    } else {
        Style::new()
    }
}

fn render_enrolment(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(e) = &app.totp.enrolment else {
        return;
    };
    frame.render_widget(Clear, area);
    let [title, body, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(
        Span::styled(" clinvault — set up the second factor (TOTP)", t.title),
        title,
    );
    // Too long an address for a QR code that fits: the secret alone is shown.
    let qr = crate::client::totp::qr_lines(&e.otpauth_uri, usize::from(body.height))
        .ok()
        .filter(|l| l.len() <= usize::from(body.height))
        .unwrap_or_default();
    let qr_w = qr.first().map_or(0, |l| l.chars().count()) as u16;
    let [left, _, right] = Layout::horizontal([
        Constraint::Length(qr_w + 1),
        Constraint::Length(1),
        Constraint::Min(20),
    ])
    .areas(body);
    let style = qr_style(app);
    let lines: Vec<Line> = qr
        .into_iter()
        .map(|l| Line::from(vec![Span::raw(" "), Span::styled(l, style)]))
        .collect();
    frame.render_widget(Paragraph::new(lines), left);
    let secret: Vec<String> = e
        .secret_base32
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .split(right);
    frame.render_widget(
        Line::from(vec![
            Span::styled("account: ", t.muted),
            Span::raw(crate::text::display(&app.totp.email)),
        ]),
        rows[0],
    );
    frame.render_widget(
        Paragraph::new(Span::styled(
            "Scan the code with an authenticator app, or type this secret into it:",
            t.base,
        ))
        .wrap(Wrap { trim: true }),
        rows[2],
    );
    frame.render_widget(
        Span::styled(
            format!(
                "  {}",
                secret.iter().take(4).cloned().collect::<Vec<_>>().join(" ")
            ),
            t.accent,
        ),
        rows[3],
    );
    frame.render_widget(
        Span::styled(
            format!(
                "  {}",
                secret.iter().skip(4).cloned().collect::<Vec<_>>().join(" ")
            ),
            t.accent,
        ),
        rows[4],
    );
    frame.render_widget(
        Span::styled("Then enter the first code it shows:", t.base),
        rows[6],
    );
    let [msg_area] = Layout::vertical([Constraint::Min(1)]).areas(rows[10]);
    code_lines(app, frame, rows[8], msg_area);
    let hint = if app.totp.signed_in {
        " Enter confirm · Esc cancel (nothing changes)"
    } else {
        " Enter confirm and log in · Esc cancel"
    };
    frame.render_widget(Span::styled(hint, t.muted), keys);
}

fn render_recovery(app: &App, frame: &mut Frame, area: Rect, codes: &[String]) {
    let t = &app.theme;
    let rows_needed = codes.len().div_ceil(2) as u16;
    let bx = centered(area, 70, 9 + rows_needed);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" clinvault — TOTP recovery codes ", t.title),
        t.muted,
    );
    let [intro, _, list, _, keys] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Length(rows_needed),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(Span::styled(
            "Second factor set up. If the phone is lost, each of these codes works once \
             instead of a code. They are shown only now: write them down or print them.",
            t.base,
        ))
        .wrap(Wrap { trim: true }),
        intro,
    );
    let half = codes.len().div_ceil(2);
    let lines: Vec<Line> = (0..half)
        .map(|i| {
            let mut spans = vec![Span::styled(format!("  {}", codes[i]), t.accent)];
            if let Some(c) = codes.get(i + half) {
                spans.push(Span::styled(format!("    {c}"), t.accent));
            }
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), list);
    frame.render_widget(
        Span::styled("Enter: I have stored them — continue", t.muted),
        keys,
    );
}

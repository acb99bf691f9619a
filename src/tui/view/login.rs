//! Login, unlock and patient registration.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui_textarea::TextArea;

use crate::tui::demo;
use crate::tui::state::{App, LoginField, RegisterField};
use crate::tui::view::{boxed, centered};

/// One labelled one-line field; only the focused one shows a cursor.
fn field(
    frame: &mut Frame,
    app: &App,
    area: Rect,
    label: &str,
    t: &TextArea<'static>,
    focus: bool,
) {
    let [l, f] = Layout::horizontal([Constraint::Length(12), Constraint::Min(1)]).areas(area);
    let style = if focus {
        app.theme.accent
    } else {
        app.theme.base
    };
    frame.render_widget(Span::styled(format!("{label:>10}: "), style), l);
    let mut t = t.clone();
    t.set_cursor_style(if focus {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new()
    });
    t.set_placeholder_style(app.theme.muted);
    t.set_style(if focus {
        Style::new().add_modifier(Modifier::UNDERLINED)
    } else {
        app.theme.base
    });
    frame.render_widget(&t, f);
}

fn demo_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut v = Vec::new();
    if !app.server.demo {
        return v;
    }
    match &app.seed {
        Some(s) if s.error.is_some() => v.push(Line::from(Span::styled(
            format!("Demo data: ✗ {}", s.error.clone().unwrap_or_default()),
            t.error,
        ))),
        Some(s) if !s.finished => {
            let width = 20usize;
            let filled = if s.total == 0 {
                0
            } else {
                (s.done as usize * width) / s.total as usize
            };
            v.push(Line::from(vec![
                Span::styled("Preparing demo data ", t.warn),
                Span::styled(
                    format!("[{}{}]", "█".repeat(filled), "·".repeat(width - filled)),
                    t.accent,
                ),
                Span::raw(format!(" {}/{}", s.done, s.total)),
            ]));
            v.push(Line::from(Span::styled(format!("  {}", s.step), t.muted)));
        }
        Some(_) => v.push(Line::from(Span::styled("Demo data ready ✓", t.ok))),
        None => v.push(Line::from(Span::styled(
            "Starting the embedded server…",
            t.muted,
        ))),
    }
    v.push(Line::from(vec![
        Span::styled("Demo accounts, password: ", t.muted),
        Span::styled(demo::DEMO_PASSWORD, t.accent),
    ]));
    for (role, email) in demo::DEMO_LOGINS {
        v.push(Line::from(vec![
            Span::styled(format!("  {role:<10}"), t.muted),
            Span::raw(*email),
        ]));
    }
    v
}

pub fn render_login(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let demo = demo_lines(app);
    let h = 11 + demo.len() as u16;
    let bx = centered(area, 68, h);
    frame.render_widget(Clear, bx);
    let title = if app.login.locked.is_some() {
        " clinvault — locked "
    } else {
        " clinvault — log in "
    };
    let block = Block::bordered()
        .title(Span::styled(title, t.title))
        .border_style(t.muted);
    let inner = block.inner(bx);
    frame.render_widget(block, bx);
    let rows = Layout::vertical([
        Constraint::Length(1), // server
        Constraint::Length(1),
        Constraint::Length(1), // email
        Constraint::Length(1), // password
        Constraint::Length(1), // register
        Constraint::Length(1),
        Constraint::Length(2), // message
        Constraint::Length(1), // keys
        Constraint::Min(0),    // demo
    ])
    .split(inner);
    let server = if app.server.url.is_empty() {
        "starting…".into()
    } else {
        app.server.url.clone()
    };
    frame.render_widget(
        Line::from(vec![
            Span::styled("    server: ", t.muted),
            Span::raw(server),
            Span::styled(
                if app.server.demo {
                    " (embedded demo)"
                } else {
                    ""
                },
                t.muted,
            ),
        ]),
        rows[0],
    );
    let f = app.login.focus;
    if let Some(email) = &app.login.locked {
        frame.render_widget(
            Line::from(vec![
                Span::styled("     email: ", t.muted),
                Span::raw(email.clone()),
            ]),
            rows[2],
        );
    } else {
        field(
            frame,
            app,
            rows[2],
            "email",
            &app.login.email,
            f == LoginField::Email,
        );
    }
    field(
        frame,
        app,
        rows[3],
        "password",
        &app.login.password.mask,
        f == LoginField::Password,
    );
    if app.login.locked.is_none() {
        let style = if f == LoginField::Register {
            t.selection
        } else {
            t.muted
        };
        frame.render_widget(
            Line::from(vec![
                Span::raw("            "),
                Span::styled("[ new patient? register ]", style),
            ]),
            rows[4],
        );
        let style = if f == LoginField::Recover {
            t.selection
        } else {
            t.muted
        };
        frame.render_widget(
            Line::from(vec![
                Span::raw("            "),
                Span::styled("[ forgot the password? recovery code ]", style),
            ]),
            rows[5],
        );
    }
    if let Some(e) = &app.status.error {
        // The server could not be started or reached: say so where the user looks.
        frame.render_widget(
            Paragraph::new(Span::styled(
                format!("✗ {}", crate::text::display(e)),
                t.error,
            ))
            .wrap(Wrap { trim: true }),
            rows[6],
        );
    } else if let Some(m) = &app.login.message {
        // A failed key check at login (issue 11) is an alarm, not a typo.
        let alarm = m.contains("someone may be impersonating") || m.contains("LEDGER CHECK FAILED");
        let style = if app.login.busy {
            t.warn
        } else if alarm {
            t.error
        } else {
            t.base
        };
        frame.render_widget(
            Paragraph::new(Span::styled(m.clone(), style)).wrap(Wrap { trim: true }),
            rows[6],
        );
    }
    let mut keys = "Tab next · Enter log in · Ctrl-C quit".to_string();
    if app.server.demo {
        keys.push_str(" · Ctrl-O mailbox");
    }
    frame.render_widget(Span::styled(keys, t.muted), rows[7]);
    frame.render_widget(Paragraph::new(demo), rows[8]);
}

pub fn render_register(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let r = &app.register;
    let bx = centered(area, 68, 17);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" clinvault — new patient ", t.title),
        t.muted,
    );
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .split(inner);
    frame.render_widget(
        Span::styled(
            "The password never leaves this computer: keep it safe.",
            t.muted,
        ),
        rows[0],
    );
    field(
        frame,
        app,
        rows[1],
        "email",
        &r.email,
        r.focus == RegisterField::Email,
    );
    field(
        frame,
        app,
        rows[2],
        "name",
        &r.name,
        r.focus == RegisterField::Name,
    );
    field(
        frame,
        app,
        rows[3],
        "phone",
        &r.phone,
        r.focus == RegisterField::Phone,
    );
    field(
        frame,
        app,
        rows[4],
        "password",
        &r.password.mask,
        r.focus == RegisterField::Password,
    );
    field(
        frame,
        app,
        rows[5],
        "again",
        &r.confirm.mask,
        r.focus == RegisterField::Confirm,
    );
    if r.verification.is_some() {
        field(
            frame,
            app,
            rows[6],
            "code",
            &r.code,
            r.focus == RegisterField::Code,
        );
    }
    if let Some(m) = &r.message {
        frame.render_widget(Paragraph::new(m.clone()).wrap(Wrap { trim: true }), rows[8]);
    }
    let mut keys = if r.verification.is_some() {
        "Enter register"
    } else {
        "Enter mail me a code"
    }
    .to_string();
    keys.push_str(" · Tab next · Esc back");
    if app.server.demo {
        keys.push_str(" · Ctrl-O mailbox");
    }
    frame.render_widget(Span::styled(keys, t.muted), rows[9]);
}

/// A lost password: email, the recovery code (masked) and the new password twice.
pub fn render_recover(app: &App, frame: &mut Frame, area: Rect) {
    use crate::tui::state::RecoverField as F;
    let t = &app.theme;
    let r = &app.recover;
    let bx = centered(area, 68, 14);
    let inner = boxed(
        frame,
        bx,
        Span::styled(" clinvault — forgot the password ", t.title),
        t.muted,
    );
    let rows = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .split(inner);
    frame.render_widget(
        Paragraph::new(Span::styled(
            "The code from your recovery kit opens your keys here; a new password then \
             seals them. Neither leaves this computer.",
            t.muted,
        ))
        .wrap(Wrap { trim: true }),
        rows[0],
    );
    field(frame, app, rows[2], "email", &r.email, r.focus == F::Email);
    field(
        frame,
        app,
        rows[3],
        "code",
        &r.code.mask,
        r.focus == F::Code,
    );
    field(frame, app, rows[4], "new", &r.new.mask, r.focus == F::New);
    field(
        frame,
        app,
        rows[5],
        "again",
        &r.again.mask,
        r.focus == F::Again,
    );
    if let Some(m) = &r.message {
        let style = if r.busy { t.warn } else { t.base };
        frame.render_widget(
            Paragraph::new(Span::styled(m.clone(), style)).wrap(Wrap { trim: true }),
            rows[7],
        );
    }
    frame.render_widget(
        Span::styled(
            "Enter next / set the password · Tab next · Esc back",
            t.muted,
        ),
        rows[8],
    );
}

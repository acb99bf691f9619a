//! Drawing: a pure function of the state (no I/O, no awaits). One file per screen or pane.

mod bookings;
mod calendar;
mod doctors;
mod emergency;
mod help;
mod ledger;
mod login;
mod mailbox;
mod otp;
mod popup;
pub mod reports;
mod totp;
mod viewer;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::api::Role;
use crate::tui::keymap::Cmd;
use crate::tui::state::{App, Pane, Popup, Screen};

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(app, frame, area);
        return;
    }
    match app.screen {
        Screen::Login => login::render_login(app, frame, area),
        Screen::Register => login::render_register(app, frame, area),
        Screen::Recover => login::render_recover(app, frame, area),
        Screen::Totp => totp::render(app, frame, area),
        Screen::Mailbox => {
            let [body, hint] =
                Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
            mailbox::render(app, frame, body);
            hint_line(
                app,
                frame,
                hint,
                &[
                    (Cmd::Up, "move"),
                    (Cmd::PageDown, "scroll mail"),
                    (Cmd::Refresh, "reload"),
                    (Cmd::Back, "back"),
                ],
            );
        }
        Screen::Main => {
            // An error gets whole lines above the status bar (up to 3), never cut at 80.
            let message = app
                .status
                .error
                .as_ref()
                .map(|e| format!("✗ {}", crate::text::display(e)));
            let msg_rows = message.as_ref().map_or(0, |m| {
                (m.chars().count() as u16)
                    .div_ceil(area.width.max(1))
                    .clamp(1, 3)
            });
            let [tabs, body, msg, hint, status] = Layout::vertical([
                Constraint::Length(1),
                Constraint::Min(1),
                Constraint::Length(msg_rows),
                Constraint::Length(1),
                Constraint::Length(1),
            ])
            .areas(area);
            if let Some(m) = message {
                frame.render_widget(
                    Paragraph::new(m)
                        .style(app.theme.error)
                        .wrap(Wrap { trim: false }),
                    msg,
                );
            }
            tab_bar(app, frame, tabs);
            // A failed ledger check: a red banner across the app (DESIGN.md §6).
            let body = match &app.ledger.failed {
                Some(why) => {
                    let [banner, rest] =
                        Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(body);
                    frame.render_widget(
                        Paragraph::new(vec![
                            Line::from(
                                " ✗ LEDGER CHECK FAILED: report actions are blocked; tell the clinic.",
                            ),
                            Line::from(format!(" {}", truncate(why, 78))),
                        ])
                        .style(app.theme.alarm),
                        banner,
                    );
                    rest
                }
                None => body,
            };
            match app.pane {
                Pane::Reports => reports::render(app, frame, body),
                Pane::Otp => otp::render(app, frame, body),
                Pane::Ledger => ledger::render(app, frame, body),
                Pane::Doctors => doctors::render(app, frame, body),
                Pane::Calendar => calendar::render(app, frame, body),
                Pane::Bookings => bookings::render(app, frame, body),
                Pane::Mailbox => mailbox::render(app, frame, body),
                Pane::Help => help::render(app, frame, body),
            }
            hint_line(app, frame, hint, &pane_hints(app));
            status_bar(app, frame, status);
            popup::render(app, frame, area);
        }
    }
}

fn too_small(app: &App, frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from(Span::styled("terminal too small", app.theme.error)),
        Line::from(format!(
            "{}×{} here; clinvault needs {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        )),
        Line::from(Span::styled(
            format!(
                "keys wait until it is larger · {} quits · Ctrl-C at once",
                app.keys.first_key(Cmd::Quit)
            ),
            app.theme.muted,
        )),
    ];
    let h = area.height.min(3);
    let y = area.y + area.height.saturating_sub(h) / 2;
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        Rect {
            y,
            height: h,
            ..area
        },
    );
}

fn tab_bar(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let labels: Vec<(Pane, String)> = app
        .panes()
        .into_iter()
        .map(|p| {
            let key = match p {
                Pane::Help => app.keys.first_key(Cmd::Help),
                other => app.keys.first_key(Cmd::Go(other)),
            };
            (p, format!("{key} {}", p.title()))
        })
        .collect();
    let width = |pad: usize| -> usize {
        labels
            .iter()
            .map(|(_, l)| l.chars().count() + pad)
            .sum::<usize>()
    };
    // The brand and the padding give way when every pane needs the room.
    let brand = width(2) + 11 <= area.width as usize;
    let pad = if brand || width(2) <= area.width as usize {
        2
    } else {
        1
    };
    let mut spans = vec![];
    if brand {
        spans.push(Span::styled(" clinvault ", t.title));
    }
    for (p, l) in labels {
        let label = if pad == 2 {
            format!(" {l} ")
        } else {
            format!(" {l}")
        };
        spans.push(Span::styled(
            label,
            if p == app.pane { t.selection } else { t.muted },
        ));
    }
    frame.render_widget(Line::from(spans), area);
}

fn pane_hints(app: &App) -> Vec<(Cmd, &'static str)> {
    let role = app.role();
    if matches!(app.popup, Some(Popup::Viewer(_))) {
        return vec![
            (Cmd::Down, "scroll"),
            (Cmd::PageDown, "page"),
            (Cmd::Back, "close"),
        ];
    }
    let mut v: Vec<(Cmd, &'static str)> = match app.pane {
        Pane::Doctors if app.doctors.editing => {
            vec![(Cmd::Back, "done typing"), (Cmd::Down, "move")]
        }
        Pane::Doctors => {
            let mut v = vec![(Cmd::Search, "search")];
            // Admin and auditor have no Calendar pane to open.
            if app.panes().contains(&Pane::Calendar) {
                v.push((Cmd::Select, "calendar"));
            }
            v.push((Cmd::Down, "move"));
            v
        }
        Pane::Calendar if app.calendar.in_day => {
            let mut v = vec![(Cmd::Back, "days")];
            if matches!(role, Some(Role::Patient | Role::Reception)) {
                v.push((Cmd::Select, "book"));
            }
            v.extend(booking_hints(role));
            v
        }
        Pane::Calendar => vec![
            (Cmd::Select, "slots"),
            (Cmd::Right, "day"),
            (Cmd::NextMonth, "month"),
        ],
        Pane::Bookings => {
            let mut v = vec![];
            if role == Some(Role::Reception) {
                v.push((Cmd::NewBooking, "new"));
            }
            v.push((Cmd::Search, "filter"));
            v.extend(booking_hints(role));
            v
        }
        Pane::Mailbox => vec![
            (Cmd::Down, "move"),
            (Cmd::PageDown, "scroll mail"),
            (Cmd::Refresh, "reload"),
        ],
        Pane::Reports if app.transfer.is_some() => {
            vec![
                (Cmd::CancelBooking, "stop transfer"),
                (Cmd::Verify, "verify"),
            ]
        }
        Pane::Reports => {
            let mut v = vec![
                (Cmd::Select, "read"),
                (Cmd::Search, "filter"),
                (Cmd::Download, "save"),
                (Cmd::Verify, "verify"),
            ];
            if role == Some(Role::Doctor) {
                v.push((Cmd::Upload, "upload"));
                v.push((Cmd::PatientReports, "patient's"));
                v.push((Cmd::AskConsent, "consent"));
            }
            v.push((Cmd::Grants, "grants"));
            if role == Some(Role::Patient) {
                v.push((Cmd::Trail, "trail"));
            }
            v
        }
        Pane::Otp if app.otp.editing => vec![(Cmd::Back, "done"), (Cmd::Select, "send code")],
        Pane::Otp if app.otp.items.is_empty() => vec![(Cmd::Refresh, "reload")],
        Pane::Otp => vec![
            (Cmd::Select, "enter code"),
            (Cmd::Resend, "resend"),
            (Cmd::Refresh, "reload"),
        ],
        Pane::Ledger if app.ledger.trail.is_some() => vec![
            (Cmd::Back, "all entries"),
            (Cmd::Search, "filter"),
            (Cmd::Refresh, "sync"),
            (Cmd::Down, "move"),
        ],
        // Issue 16: the break-glass requests beside the red kind-12 rows (patients: veto).
        Pane::Ledger
            if app
                .session
                .as_ref()
                .is_some_and(|s| matches!(s.user.role, Role::Patient | Role::Doctor)) =>
        {
            vec![
                (Cmd::Search, "filter"),
                (Cmd::Refresh, "sync"),
                (Cmd::Down, "move"),
                (Cmd::Emergencies, "break-glass"),
            ]
        }
        Pane::Ledger => vec![
            (Cmd::Search, "filter"),
            (Cmd::Refresh, "sync"),
            (Cmd::Down, "move"),
        ],
        Pane::Help => {
            return vec![
                (Cmd::Down, "scroll"),
                (Cmd::Back, "back"),
                (Cmd::Palette, "commands"),
            ];
        }
    };
    if v.len() > 4 {
        // Room for the pane's own keys at 80 columns; Help lists the rest.
        v.push((Cmd::Help, "more"));
        return v;
    }
    v.extend([
        (Cmd::NextPane, "pane"),
        (Cmd::Help, "help"),
        (Cmd::Quit, "quit"),
    ]);
    v
}

/// Only what this role may do to a booking.
fn booking_hints(role: Option<Role>) -> Vec<(Cmd, &'static str)> {
    match role {
        Some(Role::Patient) => vec![(Cmd::CancelBooking, "cancel")],
        Some(Role::Reception) => vec![(Cmd::CancelBooking, "cancel"), (Cmd::CheckIn, "check in")],
        Some(Role::Doctor) => vec![(Cmd::Complete, "complete")],
        _ => vec![],
    }
}

fn hint_line(app: &App, frame: &mut Frame, area: Rect, hints: &[(Cmd, &str)]) {
    // The latest message replaces the hints until the next key.
    if let Some(info) = &app.status.info {
        frame.render_widget(
            Line::from(Span::styled(
                format!(" {}", crate::text::display(info)),
                app.theme.ok,
            )),
            area,
        );
        return;
    }
    let mut spans = Vec::new();
    // A text field has the keys: show its keys, not commands it would type.
    if app.screen == Screen::Main && app.text_focus() {
        use crate::tui::state::Popup;
        let enter = match &app.popup {
            Some(Popup::Palette(_)) => "run",
            Some(Popup::Password(p)) => match p.focus {
                crate::tui::state::PasswordField::Again => "change",
                _ => "next",
            },
            Some(Popup::RecoveryKit(_)) => "make the kit",
            Some(Popup::BreakGlass(b))
                if b.focus == crate::tui::state::BreakGlassField::Patient =>
            {
                "next"
            }
            Some(Popup::BreakGlass(_)) => "check",
            Some(Popup::PickPatient(_) | Popup::PickDoctor(_)) => "choose",
            Some(Popup::Path(p)) => match p.purpose {
                crate::tui::state::PathFor::Upload { .. } => "next",
                crate::tui::state::PathFor::UploadTitle { .. } => "upload",
                crate::tui::state::PathFor::Download { .. } => "save",
                crate::tui::state::PathFor::Export { .. } => "write",
                crate::tui::state::PathFor::ResendCode => "mail it",
            },
            _ if app.pane == Pane::Otp => "send code",
            _ => "done",
        };
        let mut keys = vec![
            ("Enter", enter),
            ("Esc", "back"),
            ("C-a/C-e", "ends"),
            ("C-w", "word"),
            ("C-u/C-k", "clear"),
        ];
        if matches!(&app.popup, Some(crate::tui::state::Popup::Path(p)) if !matches!(p.purpose, crate::tui::state::PathFor::ResendCode | crate::tui::state::PathFor::UploadTitle { .. }))
        {
            keys.insert(2, ("Tab", "complete"));
        }
        for (key, label) in keys {
            spans.push(Span::styled(format!(" {key}"), app.theme.accent));
            spans.push(Span::styled(format!(" {label} "), app.theme.muted));
        }
        frame.render_widget(Line::from(spans), area);
        return;
    }
    let dismiss = [(Cmd::Back, "dismiss"), (Cmd::Messages, "messages")];
    let hints = if app.status.error.is_some() && app.popup.is_none() {
        &dismiss[..]
    } else {
        hints
    };
    // Whole hints only: one cut mid-word ("g gra") tells nothing. When they do not all fit,
    // the last one (where Help is) keeps its place and the ones before it give way.
    let texts: Vec<(String, String)> = hints
        .iter()
        .map(|(cmd, label)| {
            (
                format!(" {}", app.keys.first_key(*cmd)),
                format!(" {label} "),
            )
        })
        .collect();
    let width = |(k, l): &(String, String)| k.chars().count() + l.chars().count();
    // A label's trailing space may fall off the edge.
    let room = usize::from(area.width) + 1;
    let shown: Vec<&(String, String)> = if texts.iter().map(width).sum::<usize>() <= room {
        texts.iter().collect()
    } else {
        let last = texts.last();
        let mut used = last.map_or(0, width);
        let mut v: Vec<&(String, String)> = texts[..texts.len().saturating_sub(1)]
            .iter()
            .take_while(|h| {
                used += width(h);
                used <= room
            })
            .collect();
        v.extend(last);
        v
    };
    for (key, label) in shown {
        spans.push(Span::styled(key.clone(), app.theme.accent));
        spans.push(Span::styled(label.clone(), app.theme.muted));
    }
    frame.render_widget(Line::from(spans), area);
}

fn status_bar(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let who = match &app.session {
        Some(s) => format!(" {} ({})", s.user.email, s.user.role),
        None => " not logged in".into(),
    };
    let server = if app.server.url.is_empty() {
        "starting…".to_string()
    } else {
        app.server
            .url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string()
    };
    let mut left = format!(
        "{who} │ {server}{}",
        if app.server.demo { " demo" } else { "" }
    );
    // "idle" gives way to the ledger and transfer states at 80 columns.
    let quiet = app.transfer.is_none() && (app.ledger.head.is_none() || app.session.is_none());
    // The transfer has its own mark.
    let busy = app.status.busy - u32::from(app.transfer.is_some()).min(app.status.busy);
    left.push_str(&match busy {
        0 if quiet => " │ idle".to_string(),
        0 => String::new(),
        n => format!(" │ ⟳ {n}"),
    });
    let mut spans = vec![Span::styled(left, t.bar)];
    if app.session.is_some() {
        let ledger = match (&app.ledger.failed, &app.ledger.head) {
            (Some(_), _) => Span::styled(" │ ledger ✗", t.alarm),
            (None, Some(h)) => Span::styled(format!(" │ ledger ✓ {}", h.tree_size), t.bar),
            (None, None) if app.ledger.syncing => Span::styled(" │ ledger …", t.bar),
            (None, None) => Span::styled("", t.bar),
        };
        spans.push(ledger);
    }
    if let Some(tr) = &app.transfer {
        let pct = (tr.done.saturating_mul(100))
            .checked_div(tr.total)
            .unwrap_or(0);
        let arrow = match tr.kind {
            crate::tui::state::TransferKind::Upload => "↑",
            crate::tui::state::TransferKind::Download => "↓",
        };
        spans.push(Span::styled(format!(" │ {arrow} {pct}%"), t.bar));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(t.bar), area);
}

/// A bordered block with the pane's title and its loading / error state.
pub fn pane_block<'a>(app: &App, title: String, loading: bool, error: Option<&str>) -> Block<'a> {
    let mut spans = vec![Span::styled(format!(" {title} "), app.theme.title)];
    if loading {
        spans.push(Span::styled("loading… ", app.theme.muted));
    }
    if let Some(e) = error {
        spans.push(Span::styled(
            format!("✗ {} ", truncate(e, 50)),
            app.theme.error,
        ));
    }
    Block::bordered()
        .title(Line::from(spans))
        .border_style(app.theme.muted)
}

/// Shown escaped (other people's text, `crate::text::display`), then cut to `max` characters.
pub fn truncate(s: &str, max: usize) -> String {
    let s = &*crate::text::display(s);
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Draws a bordered box over whatever is under `bx` (a popup or a login form) with `title`
/// and `border`, and returns the area inside it.
pub fn boxed<'a>(
    frame: &mut Frame,
    bx: Rect,
    title: impl Into<Line<'a>>,
    border: ratatui::style::Style,
) -> Rect {
    frame.render_widget(ratatui::widgets::Clear, bx);
    let block = Block::bordered().title(title).border_style(border);
    let inner = block.inner(bx);
    frame.render_widget(block, bx);
    inner
}

/// A rectangle of `w`×`h` centred in `area` (clipped to it).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

//! Help: the keys of the pane the user came from and the keys that act everywhere, from the
//! live key map (so a remapped key shows as remapped).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::keymap::COMMANDS;
use crate::tui::state::App;
use crate::tui::view::pane_block;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let block = pane_block(
        app,
        format!("Help · {} keys", app.help_for.title()),
        false,
        None,
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = Vec::new();
    let row = |keys: String, desc: &str| {
        Line::from(vec![
            Span::styled(format!("  {keys:<18}"), t.accent),
            Span::raw(desc.to_string()),
        ])
    };
    lines.push(Line::from(Span::styled(
        format!("In {}", app.help_for.title()),
        t.title,
    )));
    for c in COMMANDS
        .iter()
        .filter(|c| c.panes.is_some_and(|p| p.contains(&app.help_for)))
    {
        lines.push(row(app.keys.keys_of(c.cmd), desc_in(c, app.help_for)));
    }
    lines.push(Line::from(Span::styled("Everywhere", t.title)));
    for c in COMMANDS.iter().filter(|c| c.panes.is_none()) {
        if let crate::tui::keymap::Cmd::Go(p) = c.cmd
            && !app.panes().contains(&p)
        {
            continue;
        }
        lines.push(row(app.keys.keys_of(c.cmd), c.desc));
    }
    lines.push(row("<C-c>".into(), "quit at once"));
    lines.push(row("<C-l>".into(), "repaint the screen"));
    lines.push(Line::from(Span::styled(
        "In a text field keys type; Esc leaves it. Esc never changes data.",
        t.muted,
    )));
    frame.render_widget(Paragraph::new(lines).scroll((app.help_scroll, 0)), inner);
}

/// A shared key's description, only the part true in `pane`.
fn desc_in(c: &crate::tui::keymap::CmdInfo, pane: crate::tui::state::Pane) -> &'static str {
    use crate::tui::keymap::Cmd;
    use crate::tui::state::Pane;
    let cal = pane == Pane::Calendar;
    match c.cmd {
        Cmd::Up if cal => "move up / previous week",
        Cmd::Down if cal => "move down / next week",
        Cmd::PageUp if cal => "page up / four weeks back",
        Cmd::PageDown if cal => "page down / four weeks on",
        Cmd::PageUp => "page up",
        Cmd::PageDown => "page down",
        Cmd::Search if pane == Pane::Doctors => "search doctors (name or specialty)",
        Cmd::Search => "filter the list",
        Cmd::CancelBooking if pane == Pane::Reports => "stop the running transfer",
        Cmd::CancelBooking => "cancel the selected booking",
        Cmd::Select => match pane {
            Pane::Doctors => "open the doctor's calendar",
            Pane::Calendar => "open the day / book the slot",
            Pane::Reports => "verify the report",
            Pane::Otp => "type the selected code",
            _ => c.desc,
        },
        _ => c.desc,
    }
}

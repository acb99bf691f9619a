//! The demo's Mailbox pane.

use super::*;

pub(super) fn load_mailbox(app: &mut App, fx: &mut Vec<Effect>) {
    if let Some(dir) = app.server.data_dir.clone() {
        app.mailbox.loading = true;
        fx.push(Effect::LoadMailbox {
            dir: dir.join("outbox"),
        });
    }
}

/// Scrolls the selected mail's body by most of its pane (it is at least 10 lines at 80×24).
pub(super) fn mailbox_scroll(app: &mut App, up: bool) {
    const BY: u16 = 8;
    let lines = app
        .mailbox
        .items
        .get(app.mailbox.selected)
        // Wrapped lines, roughly: the cap only stops scrolling past the end.
        .map_or(0, |m| {
            m.body
                .lines()
                .map(|l| 1 + l.chars().count() / 76)
                .sum::<usize>() as u16
                + 4
        });
    let m = &mut app.mailbox;
    m.body_scroll = if up {
        m.body_scroll.saturating_sub(BY)
    } else {
        (m.body_scroll + BY).min(lines.saturating_sub(1))
    };
}

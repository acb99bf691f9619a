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

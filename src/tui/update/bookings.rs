//! The Bookings pane: loading, and reloading what a booking change touched.

use super::*;

pub(super) fn load_bookings(app: &mut App, fx: &mut Vec<Effect>) {
    let Some(client) = client(app) else { return };
    app.bookings.request_id += 1;
    app.bookings.loading = true;
    let id = app.bookings.request_id;
    let from = app.clock.today - Days::days(30);
    let to = app.clock.today + Days::days(90);
    net(
        app,
        fx,
        Effect::LoadBookings {
            client,
            id,
            from,
            to,
        },
    );
}

/// A booking changed: every list that shows it or the slot it took (Doctors' "next free").
pub(super) fn reload_after_change(app: &mut App, fx: &mut Vec<Effect>) {
    load_calendar(app, fx);
    load_bookings(app, fx);
    if app.panes().contains(&Pane::Doctors) {
        app.doctors.request_id += 1;
        search_doctors(app, fx);
    }
    if app.server.demo {
        load_mailbox(app, fx);
    }
}

pub fn status_word(s: BookingStatus) -> &'static str {
    match s {
        BookingStatus::Booked => "booked",
        BookingStatus::CheckedIn => "checked in",
        BookingStatus::Completed => "completed",
        BookingStatus::Cancelled => "cancelled",
        BookingStatus::NoShow => "no-show",
    }
}

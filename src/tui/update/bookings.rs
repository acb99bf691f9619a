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

pub(super) fn bookings_loaded(
    app: &mut App,
    id: u64,
    result: crate::tui::action::UiResult<Vec<crate::api::Booking>>,
) {
    done(app);
    if id == app.bookings.request_id {
        app.bookings.loading = false;
        match result {
            Ok(items) => {
                app.bookings.all = items;
                app.bookings.error = None;
                app.bookings.refilter(app.tz);
            }
            Err(e) => app.bookings.error = Some(e),
        }
    }
}

pub(super) fn booked(
    app: &mut App,
    r: crate::tui::action::UiResult<crate::api::Booking>,
    fx: &mut Vec<Effect>,
) {
    done(app);
    match r {
        Ok(b) => {
            app.status.info = Some(format!(
                "Booked {} with {}",
                app.local(b.start),
                b.doctor_name
            ));
            app.status.error = None;
            reload_after_change(app, fx);
        }
        Err(e) => app.status.error = Some(e),
    }
}

pub(super) fn booking_changed(
    app: &mut App,
    r: crate::tui::action::UiResult<crate::api::Booking>,
    fx: &mut Vec<Effect>,
) {
    done(app);
    match r {
        Ok(b) => {
            app.status.info = Some(format!(
                "{} {}: now {}",
                b.patient_name,
                app.local(b.start),
                status_word(b.status)
            ));
            app.status.error = None;
            reload_after_change(app, fx);
        }
        Err(e) => app.status.error = Some(e),
    }
}

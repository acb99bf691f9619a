//! The commands of the key map and the `:` palette, one small function per group. Each says
//! whether it changed anything (so the screen is redrawn only then).

use super::*;

pub(super) fn command(app: &mut App, cmd: Cmd, fx: &mut Vec<Effect>) {
    let changed = match cmd {
        Cmd::Quit => quit(app),
        Cmd::Help => {
            switch_pane(app, Pane::Help, fx);
            true
        }
        Cmd::Palette => {
            app.popup = Some(Popup::palette());
            true
        }
        Cmd::NextPane | Cmd::PrevPane => cycle_pane(app, cmd, fx),
        Cmd::Go(p) => {
            switch_pane(app, p, fx);
            true
        }
        Cmd::Logout => {
            wipe(app, false, fx);
            true
        }
        Cmd::Password => {
            app.popup = Some(Popup::Password(Box::default()));
            true
        }
        Cmd::RecoveryKit => {
            app.popup = Some(Popup::RecoveryKit(Box::default()));
            true
        }
        Cmd::Totp => {
            super::totp::start_enrolment(app, fx);
            true
        }
        Cmd::Messages => {
            app.popup = Some(Popup::Messages(0));
            true
        }
        // Issue 16: break-glass.
        Cmd::BreakGlass => {
            super::emergency::open_form(app);
            true
        }
        Cmd::Emergencies => {
            super::emergency::open_list(app, fx);
            true
        }
        Cmd::Back => back(app, fx),
        Cmd::Search => search(app),
        Cmd::NewBooking => new_booking(app, fx),
        Cmd::Refresh => refresh(app, fx),
        Cmd::Up | Cmd::Down | Cmd::PageUp | Cmd::PageDown => move_selection(app, cmd, fx),
        Cmd::Left | Cmd::Right => move_calendar_day(app, cmd, fx),
        Cmd::PrevMonth | Cmd::NextMonth => move_calendar_month(app, cmd, fx),
        Cmd::Select => select(app, fx),
        Cmd::CancelBooking if app.pane == Pane::Reports => stop_transfer(app),
        Cmd::Upload
        | Cmd::Download
        | Cmd::Verify
        | Cmd::Open
        | Cmd::Export
        | Cmd::AskConsent
        | Cmd::Grants
        | Cmd::Trail
        | Cmd::PatientReports
        | Cmd::EnterCode
        | Cmd::Resend => {
            report_command(app, cmd, fx);
            true
        }
        Cmd::CancelBooking | Cmd::CheckIn | Cmd::Complete => booking_transition(app, cmd),
    };
    if changed {
        app.dirty = true;
    }
}

fn quit(app: &mut App) -> bool {
    if app.status.busy > 0 {
        app.popup = Some(Popup::ConfirmQuit);
    } else {
        app.quit = true;
    }
    true
}

fn cycle_pane(app: &mut App, cmd: Cmd, fx: &mut Vec<Effect>) -> bool {
    let panes = app.panes();
    if panes.is_empty() {
        return false;
    }
    let pos = panes.iter().position(|p| *p == app.pane).unwrap_or(0);
    let next = if cmd == Cmd::NextPane {
        (pos + 1) % panes.len()
    } else {
        (pos + panes.len() - 1) % panes.len()
    };
    switch_pane(app, panes[next], fx);
    true
}

fn back(app: &mut App, fx: &mut Vec<Effect>) -> bool {
    if app.status.error.take().is_some() {
        // Esc dismisses the message first.
    } else if app.list_filter_mut().is_some_and(|f| f.clear()) {
        // A second Esc (the first left the field) clears the filter.
        if let Some(sel) = app.list_selected_mut() {
            *sel = 0;
        }
        app.refilter();
    } else if app.pane == Pane::Reports && app.transfer.is_none() && app.reports.patient.is_some() {
        // Back from one patient's reports to the full list.
        app.reports.patient = None;
        app.reports.rows.clear();
        load_reports(app, fx);
    } else if app.pane == Pane::Ledger && app.ledger.trail.take().is_some() {
        // Back from one report's trail to every entry.
        app.ledger.selected = 0;
    } else if app.pane == Pane::Calendar && app.calendar.in_day {
        app.calendar.in_day = false;
    } else if app.pane == Pane::Reports && app.transfer.is_some() {
        // Esc is never destructive: stopping a transfer asks first.
        app.popup = Some(Popup::Confirm(Pending::StopTransfer));
    } else {
        return false;
    }
    true
}

fn search(app: &mut App) -> bool {
    match app.pane {
        Pane::Doctors => app.doctors.editing = true,
        _ => match app.list_filter_mut() {
            Some(f) => f.focused = true,
            None => return false,
        },
    }
    true
}

fn new_booking(app: &mut App, fx: &mut Vec<Effect>) -> bool {
    let role = app.role();
    if app.pane != Pane::Bookings {
        return false;
    }
    if role != Some(Role::Reception) {
        app.status.info =
            Some("Book from a doctor's calendar: 1 Doctors, Enter on a doctor.".into());
    } else {
        open_patient_picker(app, None, fx);
    }
    true
}

fn refresh(app: &mut App, fx: &mut Vec<Effect>) -> bool {
    match app.pane {
        Pane::Doctors => {
            app.doctors.request_id += 1;
            search_doctors(app, fx);
        }
        Pane::Calendar => load_calendar(app, fx),
        Pane::Bookings => load_bookings(app, fx),
        Pane::Mailbox => load_mailbox(app, fx),
        Pane::Reports => load_reports(app, fx),
        Pane::Otp => load_otp(app, fx),
        Pane::Ledger => load_entries(app, fx),
        Pane::Help => return false,
    }
    true
}

/// j/k and PgDn/PgUp: the pane's selection; `false` when nothing moved.
fn move_selection(app: &mut App, cmd: Cmd, fx: &mut Vec<Effect>) -> bool {
    let (up, by) = match cmd {
        Cmd::Up => (true, 1),
        Cmd::Down => (false, 1),
        Cmd::PageUp => (true, 10),
        _ => (false, 10),
    };
    let before = (
        app.doctors.selected,
        app.bookings.selected,
        app.mailbox.selected,
        app.help_scroll,
        app.calendar.row,
        app.calendar.selected,
        (app.reports.selected, app.otp.selected, app.ledger.selected),
    );
    match app.pane {
        Pane::Doctors => step(&mut app.doctors.selected, app.doctors.rows.len(), up, by),
        Pane::Bookings => step(&mut app.bookings.selected, app.bookings.items.len(), up, by),
        // j/k pick a mail; PgDn/PgUp scroll its body.
        Pane::Mailbox if by > 1 => mailbox_scroll(app, up),
        Pane::Mailbox => {
            step(&mut app.mailbox.selected, app.mailbox.items.len(), up, by);
            app.mailbox.body_scroll = 0;
        }
        Pane::Reports => {
            let n = app.reports.visible(app.tz).len();
            step(&mut app.reports.selected, n, up, by)
        }
        Pane::Otp => step(&mut app.otp.selected, app.otp.items.len(), up, by),
        Pane::Ledger => {
            let n = app.ledger.shown().len();
            step(&mut app.ledger.selected, n, up, by)
        }
        Pane::Help => {
            app.help_scroll = if up {
                app.help_scroll.saturating_sub(by as u16)
            } else {
                app.help_scroll.saturating_add(by as u16).min(40)
            }
        }
        Pane::Calendar => {
            if app.calendar.in_day {
                let n = app.day_rows().len();
                step(&mut app.calendar.row, n, up, by);
            } else {
                let days = if by == 1 { 7 } else { 28 };
                move_day(app, if up { -days } else { days }, fx);
            }
        }
    }
    let after = (
        app.doctors.selected,
        app.bookings.selected,
        app.mailbox.selected,
        app.help_scroll,
        app.calendar.row,
        app.calendar.selected,
        (app.reports.selected, app.otp.selected, app.ledger.selected),
    );
    if before == after {
        return false;
    }
    true
}

fn move_calendar_day(app: &mut App, cmd: Cmd, fx: &mut Vec<Effect>) -> bool {
    if app.pane != Pane::Calendar {
        return false;
    }
    app.calendar.in_day = false;
    move_day(app, if cmd == Cmd::Left { -1 } else { 1 }, fx);
    true
}

fn move_calendar_month(app: &mut App, cmd: Cmd, fx: &mut Vec<Effect>) -> bool {
    if app.pane != Pane::Calendar {
        return false;
    }
    let d = app.calendar.selected.unwrap_or(app.clock.today);
    let to = if cmd == Cmd::NextMonth {
        d.checked_add_months(Months::new(1))
    } else {
        d.checked_sub_months(Months::new(1))
    };
    if let Some(to) = to {
        set_day(app, to, fx);
    }
    true
}

fn select(app: &mut App, fx: &mut Vec<Effect>) -> bool {
    let role = app.role();
    match app.pane {
        Pane::Doctors => {
            let Some(row) = app.doctors.rows.get(app.doctors.selected) else {
                return false;
            };
            if !app.panes().contains(&Pane::Calendar) {
                app.status.info = Some("Calendars are for patients, reception and doctors.".into());
                return false;
            }
            let doctor = row.doctor.clone();
            let first = row
                .next_free
                .as_ref()
                .map(|s| s.start.with_timezone(&app.tz).date_naive())
                .unwrap_or(app.clock.today);
            app.calendar = CalendarPane {
                doctor: Some(doctor.clone()),
                selected: Some(first),
                ..CalendarPane::default()
            };
            app.pane = Pane::Calendar;
            load_calendar_for(app, doctor.id, fx);
        }
        Pane::Calendar => {
            if !app.calendar.in_day {
                if app.day_rows().is_empty() {
                    app.status.info = Some("No free slot or booking that day.".into());
                } else {
                    app.calendar.in_day = true;
                    app.calendar.row = 0;
                }
            } else {
                let rows = app.day_rows();
                match rows.get(app.calendar.row) {
                    Some(DayRow::Free(slot)) => book(app, slot.clone(), fx),
                    Some(DayRow::Booked(_)) => {
                        // Only what this role may do to a booking.
                        let mut acts = vec![(Cmd::CancelBooking, "cancel")];
                        match role {
                            Some(Role::Reception) => acts.push((Cmd::CheckIn, "check in")),
                            Some(Role::Doctor) => acts = vec![(Cmd::Complete, "complete")],
                            _ => {}
                        }
                        app.status.info = Some(
                            acts.iter()
                                .map(|(c, w)| format!("{} {w}", app.keys.first_key(*c)))
                                .collect::<Vec<_>>()
                                .join(" · "),
                        )
                    }
                    None => return false,
                }
            }
        }
        Pane::Reports => report_command(app, Cmd::Open, fx),
        Pane::Otp => report_command(app, Cmd::EnterCode, fx),
        _ => return false,
    }
    true
}

fn stop_transfer(app: &mut App) -> bool {
    if app.transfer.is_some() {
        app.popup = Some(Popup::Confirm(Pending::StopTransfer));
    } else {
        app.status.info = Some("No transfer is running.".into());
    }
    true
}

/// Cancel, check in, complete: asked y/n first, and only what the role and state allow.
fn booking_transition(app: &mut App, cmd: Cmd) -> bool {
    let role = app.role();
    let booking = match app.pane {
        Pane::Bookings => app.bookings.items.get(app.bookings.selected).cloned(),
        Pane::Calendar if app.calendar.in_day => match app.day_rows().get(app.calendar.row) {
            Some(DayRow::Booked(b)) => Some(b.clone()),
            _ => None,
        },
        _ => return false,
    };
    let Some(booking) = booking else {
        app.status.info = Some("Select a booking first.".into());
        app.dirty = true;
        return false;
    };
    let (action, who, from) = match cmd {
        Cmd::CancelBooking => ("cancel", None, BookingStatus::Booked),
        Cmd::CheckIn => ("check-in", Some(Role::Reception), BookingStatus::Booked),
        _ => ("complete", Some(Role::Doctor), BookingStatus::CheckedIn),
    };
    if let Some(who) = who
        && role != Some(who)
    {
        app.status.error = Some(format!("Only {who} staff can {action} a visit."));
    } else if booking.status != from {
        app.status.error = Some(format!(
            "This booking is {}: it cannot be {}.",
            status_word(booking.status),
            match action {
                "cancel" => "cancelled",
                "check-in" => "checked in",
                _ => "completed",
            }
        ));
    } else {
        app.popup = Some(Popup::Confirm(Pending::Transition { booking, action }));
    }
    true
}

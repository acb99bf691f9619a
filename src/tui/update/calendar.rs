//! The Calendar pane: months, days, slots, booking.

use super::*;

pub(super) fn load_calendar(app: &mut App, fx: &mut Vec<Effect>) {
    if let Some(d) = app.calendar.doctor.as_ref().map(|d| d.id) {
        load_calendar_for(app, d, fx);
    }
}

pub(super) fn load_calendar_for(app: &mut App, doctor: uuid::Uuid, fx: &mut Vec<Effect>) {
    let Some(client) = client(app) else { return };
    app.calendar.request_id += 1;
    app.calendar.loading = true;
    let id = app.calendar.request_id;
    let month = app.calendar.month_start(app.clock.today);
    let today = app.clock.today;
    let with_availability = app.role() != Some(Role::Patient);
    net(
        app,
        fx,
        Effect::LoadCalendar {
            client,
            id,
            doctor,
            month,
            today,
            with_availability,
        },
    );
}

pub(super) fn clamp_day_row(app: &mut App) {
    let n = app.day_rows().len();
    app.calendar.row = app.calendar.row.min(n.saturating_sub(1));
    if n == 0 {
        app.calendar.in_day = false;
    }
}

pub(super) fn move_day(app: &mut App, days: i64, fx: &mut Vec<Effect>) {
    let d = app.calendar.selected.unwrap_or(app.clock.today);
    if let Some(to) = d.checked_add_signed(Days::days(days)) {
        set_day(app, to, fx);
    }
}

pub(super) fn set_day(app: &mut App, to: NaiveDate, fx: &mut Vec<Effect>) {
    let old = app.calendar.month_start(app.clock.today);
    app.calendar.selected = Some(to);
    app.calendar.row = 0;
    app.calendar.in_day = false;
    if (to.year(), to.month()) != (old.year(), old.month()) {
        app.calendar.data = None;
        load_calendar(app, fx);
    }
}

pub(super) fn book(app: &mut App, slot: crate::api::Slot, fx: &mut Vec<Effect>) {
    let Some(doctor) = app.calendar.doctor.clone() else {
        return;
    };
    match app.role() {
        Some(Role::Patient) => {
            app.popup = Some(Popup::Confirm(Pending::Book {
                doctor_id: doctor.id,
                doctor_name: doctor.name,
                slot,
                patient: None,
            }))
        }
        Some(Role::Reception) => open_patient_picker(app, Some((doctor, slot)), fx),
        _ => app.status.error = Some("Only patients and reception book slots.".into()),
    }
}

/// Reception picks the patient: for a chosen slot, or first in the new-booking flow.
pub(super) fn open_patient_picker(
    app: &mut App,
    target: Option<(crate::api::Doctor, crate::api::Slot)>,
    fx: &mut Vec<Effect>,
) {
    let choose_doctor = target.is_none();
    let (doctor_id, doctor_name, slot) = match target {
        Some((d, s)) => (d.id, d.name, s),
        None => (
            uuid::Uuid::nil(),
            String::new(),
            crate::api::Slot {
                start: app.clock.now,
                end: app.clock.now,
                local_start: String::new(),
            },
        ),
    };
    app.popup = Some(Popup::PickPatient(Box::new(PatientPicker {
        query: text_field("patient name (or email with @, or phone)"),
        request_id: 0,
        results: vec![],
        selected: 0,
        error: None,
        doctor_id,
        doctor_name,
        slot,
        choose_doctor,
    })));
    fx.push(Effect::Later {
        after: Duration::ZERO,
        action: Box::new(Action::PatientsDue { id: 0 }),
    });
}

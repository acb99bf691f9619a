//! Directory, availability, slots and bookings against a real server (issue 3).

mod common;

use std::collections::HashSet;

use chrono::{Duration, NaiveDate, Utc};
use clinvault::api::{Availability, BookRequest, BookingStatus, Role, WeeklyBlock, codes};
use clinvault::client::{ApiClient, ClientError};
use common::{Db, TestServer, start_server};
use uuid::Uuid;

fn code_of(e: &ClientError) -> &str {
    e.code().unwrap_or("<no server code>")
}

fn every_day(start: &str, end: &str, len: u32) -> Vec<WeeklyBlock> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| WeeklyBlock {
            weekday: d.to_string(),
            start: start.into(),
            end: end.into(),
            slot_minutes: len,
        })
        .collect()
}

/// Tomorrow and later in the clinic's zone (Europe/Berlin in tests): safely in the future.
fn day(n: i64) -> NaiveDate {
    (Utc::now().with_timezone(&chrono_tz::Europe::Berlin) + Duration::days(n)).date_naive()
}

struct Clinic {
    ts: TestServer,
    admin: ApiClient,
    doc: ApiClient,
    doc_id: Uuid,
    doc2: ApiClient,
    doc2_id: Uuid,
    rec: ApiClient,
}

async fn clinic(db: Db) -> Clinic {
    let ts = start_server(db).await;
    let admin = ts.admin().await;
    let (doc, doc_id) = ts
        .staff(
            &admin,
            Role::Doctor,
            "dana@clinic.test",
            "Dana Herz",
            "Cardiology",
        )
        .await;
    let (doc2, doc2_id) = ts
        .staff(
            &admin,
            Role::Doctor,
            "dirk@clinic.test",
            "Dirk Haut",
            "Dermatology",
        )
        .await;
    let (rec, _) = ts
        .staff(&admin, Role::Reception, "rita@clinic.test", "Rita Desk", "")
        .await;
    doc.set_availability(
        doc_id,
        &Availability {
            weekly: every_day("09:00", "12:00", 20),
            days_off: vec![day(3)],
        },
    )
    .await
    .unwrap();
    doc2.set_availability(
        doc2_id,
        &Availability {
            weekly: every_day("09:00", "12:00", 30),
            days_off: vec![],
        },
    )
    .await
    .unwrap();
    Clinic {
        ts,
        admin,
        doc,
        doc_id,
        doc2,
        doc2_id,
        rec,
    }
}

async fn slots_and_directory(db: Db) {
    let c = clinic(db).await;
    let (p, _) = c.ts.patient("pat@clinic.test", "Pat Ient").await;
    let s = p.slots(c.doc_id, Some(day(1)), Some(day(1))).await.unwrap();
    assert_eq!(s.slots.len(), 9, "09:00-12:00 in 20-minute slots");
    assert_eq!(s.timezone, "Europe/Berlin");
    assert!(
        s.slots[0].local_start.ends_with("09:00"),
        "{:?}",
        s.slots[0]
    );
    assert!(
        p.slots(c.doc_id, Some(day(3)), Some(day(3)))
            .await
            .unwrap()
            .slots
            .is_empty(),
        "day off"
    );
    // The admin may set any doctor's template; another doctor may not (and sees nothing).
    c.admin
        .set_availability(
            c.doc_id,
            &Availability {
                weekly: every_day("09:00", "12:00", 20),
                days_off: vec![day(3), day(4)],
            },
        )
        .await
        .unwrap();
    let e = c.doc2.availability(c.doc_id).await.unwrap_err();
    assert_eq!(code_of(&e), codes::NOT_FOUND);
    let bad = Availability {
        weekly: vec![WeeklyBlock {
            weekday: "mon".into(),
            start: "09:00".into(),
            end: "09:10".into(),
            slot_minutes: 20,
        }],
        days_off: vec![],
    };
    assert_eq!(
        code_of(&c.doc.set_availability(c.doc_id, &bad).await.unwrap_err()),
        codes::BAD_REQUEST
    );
    let av = c.doc.availability(c.doc_id).await.unwrap();
    assert_eq!(av.availability.days_off, vec![day(3), day(4)]);
    // Search: case-insensitive, partial, by name and by specialty.
    let r = p.doctors("HERZ", "", 1).await.unwrap();
    assert_eq!(r.items.len(), 1);
    assert_eq!(r.items[0].id, c.doc_id);
    let r = p.doctors("", "derma", 1).await.unwrap();
    assert_eq!(r.items.len(), 1);
    assert_eq!(r.items[0].id, c.doc2_id);
    assert_eq!(p.doctors("d", "", 1).await.unwrap().total, 2);
    // `%` and `_` are literal, not wildcards.
    assert_eq!(p.doctors("%", "", 1).await.unwrap().total, 0);
    assert_eq!(p.doctors("_", "", 1).await.unwrap().total, 0);
    // Paging: 20 per page.
    for i in 0..20 {
        c.ts.staff(
            &c.admin,
            Role::Doctor,
            &format!("gp{i}@clinic.test"),
            &format!("Gina Practitioner {i:02}"),
            "General practice",
        )
        .await;
    }
    let p1 = p.doctors("", "", 1).await.unwrap();
    let p2 = p.doctors("", "", 2).await.unwrap();
    assert_eq!((p1.items.len(), p2.items.len(), p1.total), (20, 2, 22));
    let ids: HashSet<Uuid> = p1.items.iter().chain(&p2.items).map(|d| d.id).collect();
    assert_eq!(ids.len(), 22, "pages do not overlap");
    // Reception finds patients by name, email or phone.
    assert_eq!(c.rec.patients("ient", 1).await.unwrap().total, 1);
    assert_eq!(c.rec.patients("PAT@", 1).await.unwrap().total, 1);
    assert_eq!(c.rec.patients("1234567", 1).await.unwrap().total, 1);
    assert_eq!(c.rec.patients("nobody", 1).await.unwrap().total, 0);
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(availability_slots_and_search, slots_and_directory);

async fn lifecycle(db: Db) {
    let c = clinic(db).await;
    let (p1, p1_id) = c.ts.patient("p1@clinic.test", "Paula One").await;
    let (p2, p2_id) = c.ts.patient("p2@clinic.test", "Peter Two").await;
    let slots = p1
        .slots(c.doc_id, Some(day(1)), Some(day(1)))
        .await
        .unwrap()
        .slots;
    let b = p1
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[0].start,
            patient_id: None,
        })
        .await
        .unwrap();
    assert_eq!((b.status, b.patient_id), (BookingStatus::Booked, p1_id));
    // The slot is gone from the free list, and nobody else gets it.
    let after = p2
        .slots(c.doc_id, Some(day(1)), Some(day(1)))
        .await
        .unwrap()
        .slots;
    assert_eq!(after.len(), slots.len() - 1);
    assert!(!after.iter().any(|s| s.start == slots[0].start));
    let e = p2
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[0].start,
            patient_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::SLOT_TAKEN);
    // One patient cannot be in two places: doc2's 09:00 overlaps doc's 09:00–09:20.
    let e = p1
        .book(&BookRequest {
            doctor_id: c.doc2_id,
            start: slots[0].start,
            patient_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::OVERLAPPING_BOOKING);
    // Not a slot, a day off, the past.
    let odd = slots[0].start + Duration::minutes(7);
    let e = p1
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: odd,
            patient_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::NOT_A_SLOT);
    let e = p1
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[0].start + Duration::days(2),
            patient_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::NOT_A_SLOT, "day off");
    let e = p1
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[0].start - Duration::days(7),
            patient_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::IN_THE_PAST);
    // Reception books for p2, checks in; the doctor completes.
    let e = c
        .rec
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[1].start,
            patient_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::BAD_REQUEST);
    let b2 = c
        .rec
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[1].start,
            patient_id: Some(p2_id),
        })
        .await
        .unwrap();
    assert_eq!(b2.patient_id, p2_id);
    let e = c.doc.booking_action(b2.id, "complete").await.unwrap_err();
    assert_eq!(
        code_of(&e),
        codes::INVALID_STATUS,
        "complete needs a check-in"
    );
    common::backdate_booking(c.ts.handle.db(), b2.id).await;
    assert_eq!(
        c.rec
            .booking_action(b2.id, "check-in")
            .await
            .unwrap()
            .status,
        BookingStatus::CheckedIn
    );
    assert_eq!(
        c.doc
            .booking_action(b2.id, "complete")
            .await
            .unwrap()
            .status,
        BookingStatus::Completed
    );
    let e = p2.booking_action(b2.id, "cancel").await.unwrap_err();
    assert_eq!(code_of(&e), codes::INVALID_STATUS);
    // A no-show only once the slot began.
    let e = c.rec.booking_action(b.id, "no-show").await.unwrap_err();
    assert_eq!(code_of(&e), codes::INVALID_STATUS);
    // Cancelling frees the slot for someone else.
    assert_eq!(
        p1.booking_action(b.id, "cancel").await.unwrap().status,
        BookingStatus::Cancelled
    );
    let again = p2
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[0].start,
            patient_id: None,
        })
        .await
        .unwrap();
    assert_eq!(again.patient_id, p2_id);
    // Lists: each sees their own.
    let mine = p1.bookings(&[]).await.unwrap().items;
    assert!(mine.iter().all(|x| x.patient_id == p1_id));
    let docs = c.doc.bookings(&[]).await.unwrap().items;
    assert_eq!(docs.len(), 3);
    assert!(c.doc2.bookings(&[]).await.unwrap().items.is_empty());
    let all = c
        .rec
        .bookings(&[("status", "booked".into())])
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 1);
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(booking_lifecycle_and_rules, lifecycle);

async fn no_idor(db: Db) {
    let c = clinic(db).await;
    let (p1, p1_id) = c.ts.patient("p1@clinic.test", "Paula One").await;
    let (p2, _) = c.ts.patient("p2@clinic.test", "Peter Two").await;
    let slots = p1
        .slots(c.doc_id, Some(day(1)), Some(day(1)))
        .await
        .unwrap()
        .slots;
    let b = p1
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[2].start,
            patient_id: None,
        })
        .await
        .unwrap();
    let missing = Uuid::new_v4();
    for action in ["cancel"] {
        let real = p2.booking_action(b.id, action).await.unwrap_err();
        let fake = p2.booking_action(missing, action).await.unwrap_err();
        assert_eq!(real.to_string(), fake.to_string());
        assert_eq!(code_of(&real), codes::NOT_FOUND);
    }
    let real = p2.booking(b.id).await.unwrap_err();
    let fake = p2.booking(missing).await.unwrap_err();
    assert_eq!(real.to_string(), fake.to_string());
    // A patient cannot book in another's name, nor list theirs.
    let e = p2
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[5].start,
            patient_id: Some(p1_id),
        })
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), codes::NOT_FOUND);
    let listed = p2
        .bookings(&[("patient_id", p1_id.to_string())])
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    // The other doctor cannot complete or mark it.
    let e = c.doc2.booking_action(b.id, "complete").await.unwrap_err();
    assert_eq!(code_of(&e), codes::NOT_FOUND);
    // Still booked, untouched.
    assert_eq!(
        p1.booking(b.id).await.unwrap().status,
        BookingStatus::Booked
    );
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(patients_cannot_reach_others_bookings, no_idor);

async fn fifty(db: Db) {
    let c = clinic(db).await;
    let slot = c
        .doc
        .slots(c.doc_id, Some(day(2)), Some(day(2)))
        .await
        .unwrap()
        .slots[4]
        .clone();
    let mut patients = Vec::new();
    for i in 0..50 {
        let (p, _) =
            c.ts.patient(
                &format!("crowd{i}@clinic.test"),
                &format!("Crowd Member {i}"),
            )
            .await;
        patients.push(p);
    }
    let mut tasks = Vec::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    for p in patients {
        let doctor = c.doc_id;
        let start = slot.start;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            p.book(&BookRequest {
                doctor_id: doctor,
                start,
                patient_id: None,
            })
            .await
        }));
    }
    let mut ok = 0;
    let mut taken = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) if code_of(&e) == codes::SLOT_TAKEN => taken += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((ok, taken), (1, 49));
    let live = c
        .rec
        .bookings(&[("doctor_id", c.doc_id.to_string())])
        .await
        .unwrap()
        .items;
    assert_eq!(live.len(), 1);
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(fifty_concurrent_bookings_of_one_slot, fifty);

async fn one_patient_many_doctors(db: Db) {
    let c = clinic(db).await;
    let (p, _) = c.ts.patient("busy@clinic.test", "Busy Body").await;
    let mut doctors = vec![c.doc_id, c.doc2_id];
    for i in 0..6 {
        let (d, id) =
            c.ts.staff(
                &c.admin,
                Role::Doctor,
                &format!("more{i}@clinic.test"),
                &format!("Moritz More {i}"),
                "General practice",
            )
            .await;
        d.set_availability(
            id,
            &Availability {
                weekly: every_day("09:00", "12:00", 15),
                days_off: vec![],
            },
        )
        .await
        .unwrap();
        doctors.push(id);
    }
    // Everyone has a slot starting at 10:00; the patient tries all at once.
    let ten = c
        .doc
        .slots(c.doc_id, Some(day(1)), Some(day(1)))
        .await
        .unwrap()
        .slots
        .into_iter()
        .find(|s| s.local_start.ends_with("10:00"))
        .unwrap()
        .start;
    let mut tasks = Vec::new();
    for d in doctors {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.book(&BookRequest {
                doctor_id: d,
                start: ten,
                patient_id: None,
            })
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(code_of(&e), codes::OVERLAPPING_BOOKING, "{e}"),
        }
    }
    assert_eq!(ok, 1);
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(
    one_patient_cannot_overlap_under_concurrency,
    one_patient_many_doctors
);

async fn deactivation_frees_slots(db: Db) {
    let c = clinic(db).await;
    let (p1, p1_id) = c.ts.patient("p1@clinic.test", "Paula One").await;
    let (p2, _) = c.ts.patient("p2@clinic.test", "Peter Two").await;
    let slots = p1
        .slots(c.doc_id, Some(day(1)), Some(day(1)))
        .await
        .unwrap()
        .slots;
    let b1 = p1
        .book(&BookRequest {
            doctor_id: c.doc_id,
            start: slots[0].start,
            patient_id: None,
        })
        .await
        .unwrap();
    let b2 = p2
        .book(&BookRequest {
            doctor_id: c.doc2_id,
            start: slots[3].start,
            patient_id: None,
        })
        .await
        .unwrap();
    // A deactivated patient's future booking is cancelled and its slot free again.
    c.admin.deactivate(p1_id).await.unwrap();
    assert_eq!(
        c.rec.booking(b1.id).await.unwrap().status,
        BookingStatus::Cancelled
    );
    let free = p2
        .slots(c.doc_id, Some(day(1)), Some(day(1)))
        .await
        .unwrap()
        .slots;
    assert!(free.iter().any(|s| s.start == slots[0].start));
    // A deactivated doctor's patients are told, and the doctor leaves the directory.
    c.admin.deactivate(c.doc2_id).await.unwrap();
    assert_eq!(
        c.rec.booking(b2.id).await.unwrap().status,
        BookingStatus::Cancelled
    );
    assert!(c.ts.last_mail("p2@clinic.test").contains("was cancelled"));
    assert_eq!(
        code_of(&p2.doctor(c.doc2_id).await.unwrap_err()),
        codes::NOT_FOUND
    );
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(
    deactivation_cancels_future_bookings,
    deactivation_frees_slots
);

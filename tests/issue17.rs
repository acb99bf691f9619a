//! Issue 17: a complete trail, limits that hold under races, clients a hostile server cannot
//! exhaust. Each point's failure reproduced, on SQLite and (ignored unless asked for)
//! PostgreSQL.

mod common;

use clinvault::ledger::{AccessWhat, Entry};
use common::Db;
use common::clinic::{Clinic, clinic_with};
use uuid::Uuid;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `n` entries about `who` alone (a code entered by them), for a long ledger.
fn filler(n: usize, who: Uuid) -> Vec<(Entry, Vec<Uuid>)> {
    (0..n)
        .map(|_| {
            (
                Entry::OtpVerified {
                    time_ms: now_ms(),
                    request_id: *Uuid::new_v4().as_bytes(),
                    user_id: *who.as_bytes(),
                },
                vec![who],
            )
        })
        .collect()
}

/// One "key served" entry about the clinic's patient.
fn about_patient(c: &Clinic) -> Vec<(Entry, Vec<Uuid>)> {
    vec![(
        Entry::ReportAccess {
            time_ms: now_ms(),
            report_id: *Uuid::new_v4().as_bytes(),
            reader_id: *c.doc.id.as_bytes(),
            what: AccessWhat::KeyServed,
        },
        vec![c.pat.id, c.doc.id],
    )]
}

/// Point 1: with more than 2,500 entries and long stretches about others, the patient's
/// trail (CLI and the TUI's fetch) still reaches the newest entries about them.
async fn trail_reaches_the_head(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let h = &c.ts.handle;
    h.append_for_tests(&filler(1300, c.pat2.id)).await.unwrap();
    let mid = h.append_for_tests(&about_patient(&c)).await.unwrap()[0];
    h.append_for_tests(&filler(1250, c.pat2.id)).await.unwrap();
    let last = h.append_for_tests(&about_patient(&c)).await.unwrap()[0];
    let l = c.pat.ledger().await.unwrap();
    assert!(l.head().tree_size > 2500, "{}", l.head().tree_size);
    let all = l.entries(0, l.head().tree_size).await.unwrap();
    let idx: Vec<u64> = all.iter().map(|(i, _)| *i).collect();
    assert!(
        idx.contains(&mid) && idx.contains(&last),
        "entries {mid} and {last} missing from the trail {idx:?}"
    );
    let newest: Vec<u64> = l
        .latest_entries(2)
        .await
        .unwrap()
        .iter()
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(newest, vec![mid, last]);
}
both_backends!(trail_complete, trail_reaches_the_head);

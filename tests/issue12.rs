//! What outside testing found (issue 12): each point's failure reproduced, on SQLite and
//! (ignored unless asked for) PostgreSQL.

mod common;

use clinvault::client::reports::approve_and_wrap;
use common::Db;
use common::clinic::{clinic_with, release, report_bytes, upload_file, write_file};

/// 1. A grant request on a report still awaiting release is refused; a failed approve-and-wrap
/// records no consent.
async fn approve_is_all_or_nothing(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let out = upload_file(
        &c,
        &write_file(work.path(), "f", &report_bytes(10_000, b"grant")),
        "F",
    )
    .await;
    let e = c.doc2.c.grant_request(out.report_id).await.unwrap_err();
    assert_eq!(e.code(), Some("not_released"), "{e}");

    release(&c).await;
    let g = c.doc2.c.grant_request(out.report_id).await.unwrap();
    // The patient's copy cannot be read just now (un-released behind their back): the
    // approval must not be recorded either.
    sqlx::query("UPDATE reports SET released_at = NULL WHERE id = $1")
        .bind(out.report_id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let mut l = c.pat.ledger().await.unwrap();
    approve_and_wrap(&c.pat.c, &c.pat.me, &mut l, g.id)
        .await
        .unwrap_err();
    let now = c.pat.c.grants().await.unwrap();
    let now = now.iter().find(|x| x.id == g.id).unwrap();
    assert_eq!(now.status, "requested", "a failed approve left {now:?}");

    sqlx::query("UPDATE reports SET released_at = created_at WHERE id = $1")
        .bind(out.report_id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let done = approve_and_wrap(&c.pat.c, &c.pat.me, &mut l, g.id)
        .await
        .unwrap();
    assert_eq!(done.status, "wrapped");
    let l2 = c.doc2.ledger().await.unwrap();
    clinvault::client::reports::verify(&c.doc2.c, &c.doc2.me, &l2, out.report_id, 2)
        .await
        .unwrap();
}
both_backends!(approve_all_or_nothing, approve_is_all_or_nothing);

//! One writer per upload state (issue 17 point 11): while one process holds an upload's state,
//! another is refused instead of pinning plaintexts of its own; once the first is gone, the
//! upload resumes and finishes byte-identical.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clinvault::client::ClientError;
use clinvault::client::reports::{Progress, UploadOptions, upload};
use common::Db;
use common::clinic::{clinic_with, release, report_bytes, upload_options, write_file};

/// 64 KiB chunks: the sealer, a batch ahead, has not pinned the whole file when a run stops.
fn small(o: UploadOptions<'_>) -> UploadOptions<'_> {
    UploadOptions {
        chunk_size: 64 * 1024,
        ..o
    }
}

#[tokio::test]
async fn a_second_writer_is_refused_and_the_upload_resumes_after() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let data = report_bytes(6 * 1024 * 1024, b"locked");
    let file = write_file(work.path(), "locked.bin", &data);
    let l = c.doc.ledger().await.unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let stop = |p: Progress| {
        if p.chunks_done >= 2 {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let e = upload(
        &c.doc.c,
        &c.doc.me,
        &l,
        c.pat.id,
        &file,
        &UploadOptions {
            cancel: Some(cancel.clone()),
            progress: Some(&stop),
            ..small(upload_options(&c.doc, 1, "Locked"))
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::Cancelled), "{e}");

    // Another process holds the state's lock (flock: a second open file conflicts even in
    // this process).
    let uploads = c.doc.state.path().join("uploads");
    let lock_path = std::fs::read_dir(&uploads)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "lock"))
        .expect("the upload's lock file");
    let state_before = std::fs::read(lock_path.with_extension("state")).unwrap();
    let held = std::fs::File::open(&lock_path).unwrap();
    held.lock().unwrap();
    let e = upload(
        &c.doc.c,
        &c.doc.me,
        &l,
        c.pat.id,
        &file,
        &small(upload_options(&c.doc, 2, "Locked")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, ClientError::Refused(m) if m.contains("another clinvault process")),
        "{e}"
    );
    assert_eq!(
        std::fs::read(lock_path.with_extension("state")).unwrap(),
        state_before,
        "the refused writer left the state alone"
    );
    drop(held);

    // A crash in the middle of appending a record leaves part of one: the next run ignores
    // it and keeps appending whole records, so a later resume still reads the journal.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(lock_path.with_extension("state"))
            .unwrap();
        f.write_all(&[0x5a; 20]).unwrap();
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let stop = |p: Progress| {
        if p.chunks_done >= 4 {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let e = upload(
        &c.doc.c,
        &c.doc.me,
        &l,
        c.pat.id,
        &file,
        &UploadOptions {
            cancel: Some(cancel.clone()),
            progress: Some(&stop),
            ..small(upload_options(&c.doc, 1, "Locked"))
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::Cancelled), "{e}");

    // The holder is gone: the upload resumes the same report and finishes.
    let out = upload(
        &c.doc.c,
        &c.doc.me,
        &l,
        c.pat.id,
        &file,
        &small(upload_options(&c.doc, 2, "Locked")),
    )
    .await
    .unwrap();
    assert!(!out.restarted);
    assert!(out.chunks_skipped >= 2, "{out:?}");
    assert_eq!(out.chunks_sent + out.chunks_skipped, out.chunks_total);
    release(&c).await;
    let lp = c.pat.ledger().await.unwrap();
    let back = work.path().join("back.bin");
    clinvault::client::reports::download(
        &c.pat.c,
        &c.pat.me,
        &lp,
        out.report_id,
        &back,
        &clinvault::client::reports::TransferOptions::new(4),
    )
    .await
    .unwrap();
    assert!(std::fs::read(&back).unwrap() == data, "byte-identical");
    c.ts.handle.shutdown().await.unwrap();
}

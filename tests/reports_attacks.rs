//! Reports under attack and accident (issue 4): damaged replicas and the audit's repair, a
//! server that lies (swapped keys, rewritten manifests, substituted author keys, a dropped or
//! forked ledger), a dishonest uploader, interrupted and changed uploads, and the rules of
//! one-time codes and grants.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use clinvault::api::{CommitRequest, WrappedKeyIn};
use clinvault::client::ClientError;
use clinvault::client::audit::{Finding, audit};
use clinvault::client::reports::{
    Progress, TransferOptions, UploadOptions, check_grant_for_wrap, download, upload,
};
use clinvault::seal::{Dek, Manifest, ReportKeys, ReportMeta, seal_meta, wrap_dek};
use clinvault::server::chunk_store::object_key;
use common::clinic::{
    Clinic, clinic_with, release, report_bytes, send_sealed_chunks, upload_file, upload_options,
    write_file,
};
use common::{Db, six_digits};
use sqlx::Row;
use uuid::Uuid;

fn replica_path(c: &Clinic, bucket: &str, chunk_hex: &str) -> std::path::PathBuf {
    let mut id = [0u8; 32];
    hex::decode_to_slice(chunk_hex, &mut id).unwrap();
    c.ts.dir
        .path()
        .join("buckets")
        .join(bucket)
        .join(object_key(&id))
}

fn flip(path: &std::path::Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part"))
        .collect()
}

async fn replicas_and_repair(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let data = report_bytes(3 * 1024 * 1024 + 5, b"replica-test");
    let file = write_file(work.path(), "scan.bin", &data);
    let out = upload_file(&c, &file, "Scan").await;
    release(&c).await;
    let ids = c.doc.c.report(out.report_id).await.unwrap().chunk_ids;
    assert_eq!(ids.len(), 4);

    // One byte changed in one replica, another replica gone.
    flip(&replica_path(&c, "a", &ids[1]), 100);
    std::fs::remove_file(replica_path(&c, "b", &ids[0])).unwrap();
    let l = c.pat.ledger().await.unwrap();
    let target = work.path().join("scan-copy.bin");
    download(
        &c.pat.c,
        &c.pat.me,
        &l,
        out.report_id,
        &target,
        &TransferOptions::new(4),
    )
    .await
    .expect("download falls back to the intact replicas");
    assert!(std::fs::read(&target).unwrap() == data);

    let la = c.auditor.ledger().await.unwrap();
    let s = audit(&c.auditor.c, &la, false).await.unwrap();
    let rid = out.report_id.to_string();
    assert!(
        s.findings.contains(&Finding::Corrupt {
            chunk: ids[1].clone(),
            bucket: "a".into(),
            report: rid.clone(),
            index: 1
        }),
        "{:?}",
        s.findings
    );
    assert!(
        s.findings.contains(&Finding::Missing {
            chunk: ids[0].clone(),
            bucket: "b".into(),
            report: rid.clone(),
            index: 0
        }),
        "{:?}",
        s.findings
    );
    assert_eq!((s.corrupt, s.missing, s.findings.len()), (1, 1, 2));
    assert!(
        s.findings[0].to_string().contains(&ids[0]) || s.findings[1].to_string().contains(&ids[0])
    );

    let s = audit(&c.auditor.c, &la, true).await.unwrap();
    assert_eq!(s.repaired.len(), 2, "{:?}", s.findings);
    let s = audit(&c.auditor.c, &la, false).await.unwrap();
    assert!(s.clean(), "after repair: {:?}", s.findings);
    assert_eq!(
        std::fs::read(replica_path(&c, "b", &ids[0])).unwrap().len(),
        1024 * 1024 + 16
    );

    // Both replicas of chunk 2 damaged: the download fails naming it, and leaves nothing.
    flip(&replica_path(&c, "a", &ids[2]), 7);
    flip(&replica_path(&c, "b", &ids[2]), 9);
    let target2 = work.path().join("scan-again.bin");
    let e = download(
        &c.pat.c,
        &c.pat.me,
        &l,
        out.report_id,
        &target2,
        &TransferOptions::new(4),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("chunk 2"), "{e}");
    assert!(!target2.exists());
    assert!(
        leftovers(work.path()).is_empty(),
        "{:?}",
        leftovers(work.path())
    );
    // The audit cannot repair what has no good copy, and says so.
    let s = audit(&c.auditor.c, &la, true).await.unwrap();
    assert_eq!(s.corrupt, 2);
    assert!(s.repaired.is_empty());
}
both_backends!(replicas, replicas_and_repair);

/// Truncates the ledger to `k` entries behind the server's back, as a database administrator
/// could.
async fn truncate_ledger(c: &Clinic, k: i64) {
    let db = c.ts.handle.db();
    sqlx::query("DELETE FROM ledger_entries WHERE idx >= $1")
        .bind(k)
        .execute(db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM ledger_subjects WHERE idx >= $1")
        .bind(k)
        .execute(db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM ledger_heads")
        .execute(db)
        .await
        .unwrap();
    let nodes = sqlx::query("SELECT level, idx FROM ledger_nodes")
        .fetch_all(db)
        .await
        .unwrap();
    for n in nodes {
        let (level, idx): (i64, i64) = (n.get("level"), n.get("idx"));
        if (idx + 1) << level > k {
            sqlx::query("DELETE FROM ledger_nodes WHERE level = $1 AND idx = $2")
                .bind(level)
                .bind(idx)
                .execute(db)
                .await
                .unwrap();
        }
    }
    sqlx::query("UPDATE ledger_state SET size = $1")
        .bind(k)
        .execute(db)
        .await
        .unwrap();
}

async fn lying_server(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let d1 = report_bytes(200_000, b"first");
    let d2 = report_bytes(300_000, b"second");
    let r1 = upload_file(&c, &write_file(work.path(), "one", &d1), "One")
        .await
        .report_id;
    release(&c).await;
    let r2 = upload_file(&c, &write_file(work.path(), "two", &d2), "Two")
        .await
        .report_id;
    release(&c).await;
    let pool = c.ts.handle.db();
    let target = work.path().join("out");
    let l = c.pat.ledger().await.unwrap();

    // A wrapped key from another report swapped in.
    let wrapped = |r: Uuid| {
        sqlx::query("SELECT wrapped FROM wrapped_keys WHERE report_id = $1 AND reader_id = $2")
            .bind(r.to_string())
            .bind(c.pat.id.to_string())
    };
    let w1: Vec<u8> = wrapped(r1).fetch_one(pool).await.unwrap().get("wrapped");
    let w2: Vec<u8> = wrapped(r2).fetch_one(pool).await.unwrap().get("wrapped");
    let set_wrapped = |w: Vec<u8>| {
        sqlx::query("UPDATE wrapped_keys SET wrapped = $1 WHERE report_id = $2 AND reader_id = $3")
            .bind(w)
            .bind(r1.to_string())
            .bind(c.pat.id.to_string())
    };
    set_wrapped(w2).execute(pool).await.unwrap();
    let e = download(
        &c.pat.c,
        &c.pat.me,
        &l,
        r1,
        &target,
        &TransferOptions::new(2),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    assert!(
        e.to_string().contains("not the one recorded in the ledger"),
        "{e}"
    );
    set_wrapped(w1).execute(pool).await.unwrap();

    // A rewritten manifest (its date moved).
    let m: Vec<u8> = sqlx::query("SELECT manifest FROM reports WHERE id = $1")
        .bind(r1.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
        .get("manifest");
    let mut bad = m.clone();
    bad[21 + 48 + 7] ^= 0x01;
    let set_manifest = |b: Vec<u8>| {
        sqlx::query("UPDATE reports SET manifest = $1 WHERE id = $2")
            .bind(b)
            .bind(r1.to_string())
    };
    set_manifest(bad).execute(pool).await.unwrap();
    let e = download(
        &c.pat.c,
        &c.pat.me,
        &l,
        r1,
        &target,
        &TransferOptions::new(2),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("manifest"), "{e}");
    set_manifest(m).execute(pool).await.unwrap();

    // The author's key substituted by one of the server's own.
    let real: Vec<u8> = sqlx::query("SELECT ed25519_pub FROM users WHERE id = $1")
        .bind(c.doc.id.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
        .get("ed25519_pub");
    let fake = clinvault::seal::UserSecrets::generate()
        .unwrap()
        .public()
        .ed25519;
    let set_key = |k: Vec<u8>| {
        sqlx::query("UPDATE users SET ed25519_pub = $1 WHERE id = $2")
            .bind(k)
            .bind(c.doc.id.to_string())
    };
    set_key(fake.to_vec()).execute(pool).await.unwrap();
    let e = download(
        &c.pat.c,
        &c.pat.me,
        &l,
        r1,
        &target,
        &TransferOptions::new(2),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    assert!(
        e.to_string().contains("not the ones the ledger registered"),
        "{e}"
    );
    set_key(real).execute(pool).await.unwrap();

    // Everything restored: the report downloads.
    download(
        &c.pat.c,
        &c.pat.me,
        &l,
        r1,
        &target,
        &TransferOptions::new(2),
    )
    .await
    .unwrap();
    assert!(std::fs::read(&target).unwrap() == d1);
    assert!(leftovers(work.path()).is_empty());

    // A dropped ledger entry: the signer remembers the head it signed and refuses (issue 11).
    let seen = c.pat.ledger().await.unwrap().head().tree_size as i64;
    truncate_ledger(&c, seen - 1).await;
    let e = c.pat.ledger().await.map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("ledger rollback"), "{e}");
    let alarm =
        c.ts.handle
            .ledger_alarm()
            .expect("the signer raised an alarm");
    assert!(
        alarm.contains(&format!("holds {} entries", seen - 1))
            && alarm.contains(&format!("over {seen} entries")),
        "{alarm}"
    );
    // The clients' own checks, against a server that signs anything (test-only signer): the
    // tree shrinks under a client that saw it whole.
    c.ts.handle.sign_anything_for_tests();
    let e = c.pat.ledger().await.map(|_| ()).unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    assert!(e.to_string().contains("rollback"), "{e}");
    // The server grows it back with other entries: a fork of what the client saw.
    c.ts.patient("fork1@clinic.test", "Fork One").await;
    c.ts.patient("fork2@clinic.test", "Fork Two").await;
    let e = c.pat.ledger().await.map(|_| ()).unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    assert!(e.to_string().contains("not consistent"), "{e}");
}
both_backends!(server_lies, lying_server);

/// An author whose client wraps one key to the patient and commits to another: the patient's
/// client refuses before opening anything.
async fn dishonest_uploader(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let report_id = Uuid::new_v4();
    let data = report_bytes(50_000, b"dishonest");
    let (dek, other) = (Dek::generate().unwrap(), Dek::generate().unwrap());
    let (sum, ids) = send_sealed_chunks(&c, report_id, &dek, &data).await;
    let keys = ReportKeys::derive(&dek, report_id.as_bytes());
    let meta = seal_meta(
        &keys,
        report_id.as_bytes(),
        &ReportMeta {
            title: "x".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let manifest = Manifest {
        report_id: *report_id.as_bytes(),
        patient_id: *c.pat.id.as_bytes(),
        author_id: *c.doc.id.as_bytes(),
        created_at_ms: 1,
        plaintext_len: sum.plaintext_len,
        chunk_size: sum.chunk_size,
        n_chunks: sum.n_chunks,
        head: sum.head,
        meta_hash: clinvault::seal::meta_hash(&meta),
        key_commit: sum.key_commit,
    };
    let pat_keys = c.pat.me.secrets.public();
    let wrong = wrap_dek(
        &other,
        report_id.as_bytes(),
        c.pat.id.as_bytes(),
        &pat_keys.x25519,
    )
    .unwrap();
    let mine = wrap_dek(
        &dek,
        report_id.as_bytes(),
        c.doc.id.as_bytes(),
        &c.doc.me.secrets.public().x25519,
    )
    .unwrap();
    c.doc
        .c
        .commit_report(
            report_id,
            &CommitRequest {
                manifest: manifest.to_bytes().to_vec(),
                signature: manifest.sign(c.doc.me.secrets.signing_key()).to_vec(),
                meta,
                chunk_ids: ids.iter().map(hex::encode).collect(),
                wrapped_keys: vec![
                    WrappedKeyIn {
                        reader_id: c.pat.id,
                        wrapped: wrong.to_vec(),
                    },
                    WrappedKeyIn {
                        reader_id: c.doc.id,
                        wrapped: mine.to_vec(),
                    },
                ],
            },
        )
        .await
        .unwrap();
    release(&c).await;
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("r");
    let l = c.pat.ledger().await.unwrap();
    let e = download(
        &c.pat.c,
        &c.pat.me,
        &l,
        report_id,
        &target,
        &TransferOptions::new(2),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("key commitment"), "{e}");
    assert!(!target.exists());
}
both_backends!(key_commit, dishonest_uploader);

async fn interrupted_uploads(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let data = report_bytes(12 * 1024 * 1024, b"resume");
    let file = write_file(work.path(), "big.bin", &data);
    let l = c.doc.ledger().await.unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let sent = AtomicU32::new(0);
    let stop_after_5 = |p: Progress| {
        sent.store(p.chunks_done, Ordering::SeqCst);
        if p.chunks_done >= 5 {
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let first = upload(
        &c.doc.c,
        &c.doc.me,
        &l,
        c.pat.id,
        &file,
        &UploadOptions {
            cancel: Some(cancel.clone()),
            progress: Some(&stop_after_5),
            ..upload_options(&c.doc, 2, "Big")
        },
    )
    .await;
    assert!(matches!(first, Err(ClientError::Cancelled)), "{first:?}");
    let sent_first = sent.load(Ordering::SeqCst);
    assert!((5..12).contains(&sent_first), "{sent_first}");

    // What the server holds: the chunks counted, and perhaps one whose answer the cancel cut off.
    let present: i64 = sqlx::query("SELECT COUNT(*) AS n FROM report_chunks")
        .fetch_one(c.ts.handle.db())
        .await
        .unwrap()
        .get("n");
    let present = present as u32;
    assert!(present >= sent_first && present < 12, "{present}");

    // Restarted: only the missing chunks go up, and the report downloads intact.
    let second = upload(
        &c.doc.c,
        &c.doc.me,
        &l,
        c.pat.id,
        &file,
        &upload_options(&c.doc, 2, "Big"),
    )
    .await
    .unwrap();
    assert!(!second.restarted);
    // A PUT the cancel cut off may still land on the server after the count above (up to the
    // two transfers in flight): those are skipped too, never sent twice.
    assert!(
        (present..=present + 2).contains(&second.chunks_skipped),
        "chunks already on the server were not sent: {present} counted, {} skipped",
        second.chunks_skipped
    );
    assert_eq!(second.chunks_sent, 12 - second.chunks_skipped);
    release(&c).await;
    let lp = c.pat.ledger().await.unwrap();
    let target = work.path().join("big-copy.bin");
    download(
        &c.pat.c,
        &c.pat.me,
        &lp,
        second.report_id,
        &target,
        &TransferOptions::new(4),
    )
    .await
    .unwrap();
    assert!(std::fs::read(&target).unwrap() == data);

    // Interrupted again on another file, which then changes: the resume is refused and the
    // file goes up as a new report, with a new key; the old report gets no new chunk.
    let mut data2 = report_bytes(6 * 1024 * 1024, b"changed");
    let file2 = write_file(work.path(), "edit.bin", &data2);
    let cancel2 = Arc::new(AtomicBool::new(false));
    let stop_after_3 = |p: Progress| {
        if p.chunks_done >= 3 {
            cancel2.store(true, Ordering::SeqCst);
        }
    };
    let mut opts2 = UploadOptions {
        cancel: Some(cancel2.clone()),
        progress: Some(&stop_after_3),
        ..upload_options(&c.doc, 1, "Edit")
    };
    let e = upload(&c.doc.c, &c.doc.me, &l, c.pat.id, &file2, &opts2)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Cancelled));
    let open_before: Vec<(String, i64)> = sqlx::query(
        "SELECT r.id, (SELECT COUNT(*) FROM report_chunks rc WHERE rc.report_id = r.id) AS n \
         FROM reports r WHERE r.status = 'open'",
    )
    .fetch_all(c.ts.handle.db())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("id"), r.get("n")))
    .collect();
    assert_eq!(open_before.len(), 1);
    data2[1024 * 1024 + 10] ^= 0xff; // chunk 1, already sent
    std::fs::write(&file2, &data2).unwrap();
    opts2.cancel = None;
    opts2.progress = None;
    let third = upload(&c.doc.c, &c.doc.me, &l, c.pat.id, &file2, &opts2)
        .await
        .unwrap();
    assert!(third.restarted, "the changed input started a new report");
    assert_ne!(third.report_id.to_string(), open_before[0].0);
    assert_eq!(third.chunks_sent, 6, "a new report sends everything");
    let old_now: i64 = sqlx::query("SELECT COUNT(*) AS n FROM report_chunks WHERE report_id = $1")
        .bind(open_before[0].0.clone())
        .fetch_one(c.ts.handle.db())
        .await
        .unwrap()
        .get("n");
    assert_eq!(
        old_now, open_before[0].1,
        "nothing more was sealed under the old key"
    );
    release(&c).await;
    let target2 = work.path().join("edit-copy.bin");
    let lp = c.pat.ledger().await.unwrap();
    download(
        &c.pat.c,
        &c.pat.me,
        &lp,
        third.report_id,
        &target2,
        &TransferOptions::new(4),
    )
    .await
    .unwrap();
    assert!(std::fs::read(&target2).unwrap() == data2);
}
both_backends!(resume, interrupted_uploads);

async fn code_and_grant_rules(db: Db) {
    // More entries than the per-minute limit of one request: the rules, not the limit, answer.
    let c = clinic_with(db, |cfg| cfg.server.otp_per_minute = 100).await;
    let work = tempfile::tempdir().unwrap();
    let data = report_bytes(10_000, b"codes");
    let out = upload_file(&c, &write_file(work.path(), "f", &data), "F").await;
    let req = out.commit.release_request_id.unwrap();
    let code = six_digits(&c.ts.last_mail(&c.pat.email));
    let wrong = if code == "000000" { "111111" } else { "000000" };

    // Wrong five times: each says how many tries are left, then the request is locked.
    for left in (1..=4).rev() {
        let e = c.pat.c.otp_verify(req, wrong).await.unwrap_err();
        assert_eq!(e.code(), Some("code_invalid"));
        assert!(e.to_string().contains(&format!("{left} tries left")), "{e}");
    }
    let e = c.pat.c.otp_verify(req, wrong).await.unwrap_err();
    assert_eq!(e.code(), Some("code_locked"), "{e}");
    let e = c.pat.c.otp_verify(req, &code).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some("code_locked"),
        "the right code after five wrong ones: {e}"
    );

    // Reception resends: a new code, the old one dead.
    c.rec.c.otp_resend(req).await.unwrap();
    let code2 = six_digits(&c.ts.last_mail(&c.pat.email));
    if code2 != code {
        let e = c.pat.c.otp_verify(req, &code).await.unwrap_err();
        assert_eq!(e.code(), Some("code_invalid"));
    }
    // Expired.
    sqlx::query("UPDATE otp_requests SET expires_at = 1 WHERE id = $1")
        .bind(req.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let e = c.pat.c.otp_verify(req, &code2).await.unwrap_err();
    assert_eq!(e.code(), Some("code_expired"), "{e}");
    c.pat.c.otp_resend(req).await.unwrap();
    let code3 = six_digits(&c.ts.last_mail(&c.pat.email));
    // Another account.
    let e = c.pat2.c.otp_verify(req, &code3).await.unwrap_err();
    assert_eq!(e.code(), Some("code_invalid"), "{e}");
    c.pat.c.otp_verify(req, &code3).await.unwrap();
    // Reused.
    let e = c.pat.c.otp_verify(req, &code3).await.unwrap_err();
    assert_eq!(e.code(), Some("code_used"), "{e}");

    // A grant approved in the database by hand never leads a client to wrap.
    let g = c.doc2.c.grant_request(out.report_id).await.unwrap();
    sqlx::query("UPDATE grants SET status = 'approved', approved_at = 1 WHERE id = $1")
        .bind(g.id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let l = c.doc.ledger().await.unwrap();
    let e = check_grant_for_wrap(&c.doc.c, &l, g.id).await.unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    // Pointed at some other ledger entry: still refused.
    sqlx::query("UPDATE grants SET approval_index = 0 WHERE id = $1")
        .bind(g.id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let e = check_grant_for_wrap(&c.doc.c, &l, g.id).await.unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    // The grant's code is for the grant's request only; the release request's id is refused.
    let gcode = six_digits(&c.ts.last_mail(&c.pat.email));
    let e = c.doc2.c.otp_verify(req, &gcode).await.unwrap_err();
    assert_eq!(e.code(), Some("code_invalid"), "{e}");
}
both_backends!(otp_rules, code_and_grant_rules);

/// An upload abandoned for longer than the limit is swept with its chunks; committed reports
/// and fresh uploads stay.
async fn abandoned_uploads(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let kept = upload_file(
        &c,
        &write_file(work.path(), "kept", &report_bytes(100_000, b"kept")),
        "Kept",
    )
    .await;
    let data = report_bytes(4 * 1024 * 1024, b"abandoned");
    let file = write_file(work.path(), "abandoned", &data);
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
            ..upload_options(&c.doc, 1, "Abandoned")
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ClientError::Cancelled));
    let db = c.ts.handle.db();
    let open: String = sqlx::query("SELECT id FROM reports WHERE status = 'open'")
        .fetch_one(db)
        .await
        .unwrap()
        .get("id");
    let chunks: Vec<String> =
        sqlx::query("SELECT chunk_id FROM report_chunks WHERE report_id = $1")
            .bind(open.clone())
            .fetch_all(db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("chunk_id"))
            .collect();
    assert!(!chunks.is_empty());
    // Touched just now: a day has not passed, nothing goes.
    assert_eq!(c.ts.handle.sweep_abandoned_uploads().await.unwrap(), 0);
    sqlx::query("UPDATE reports SET touched_at = touched_at - 90000000 WHERE id = $1")
        .bind(open.clone())
        .execute(db)
        .await
        .unwrap();
    // Opened a day ago but a chunk arrived since: an upload still running (chunk uploads do
    // not touch the report), nothing goes.
    assert_eq!(c.ts.handle.sweep_abandoned_uploads().await.unwrap(), 0);
    sqlx::query(
        "UPDATE chunks SET created_at = created_at - 90000000 WHERE id IN \
         (SELECT chunk_id FROM report_chunks WHERE report_id = $1)",
    )
    .bind(open.clone())
    .execute(db)
    .await
    .unwrap();
    assert_eq!(c.ts.handle.sweep_abandoned_uploads().await.unwrap(), 1);
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM reports WHERE id = $1")
        .bind(open)
        .fetch_one(db)
        .await
        .unwrap()
        .get("n");
    assert_eq!(left, 0);
    for id in &chunks {
        for b in ["a", "b"] {
            assert!(
                !replica_path(&c, b, id).exists(),
                "swept chunk {id} still in bucket {b}"
            );
        }
    }
    // The committed report is untouched and still verifies.
    release(&c).await;
    let lp = c.pat.ledger().await.unwrap();
    clinvault::client::reports::verify(&c.pat.c, &c.pat.me, &lp, kept.report_id, 2)
        .await
        .unwrap();
}
both_backends!(sweep, abandoned_uploads);

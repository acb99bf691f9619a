//! Issue 15 point 3, the ledger side of an admin reset: a key rotation (kind 10) that every
//! monitor understands. The rotation is appended with the server's own append key (what its
//! reset route will do; the route itself is not built yet) and the user's row pointed at it.
//! Then: the author's client shows the change loudly and wraps nothing until the fingerprints
//! are accepted; reports signed before still verify; the user's own client checks the chain;
//! the audit lists the rotation. A database-only attacker's rotation is refused by the signer,
//! and a rotation that does not chain is refused by the clients even when signed.

mod common;

use clinvault::client::ClientError;
use clinvault::client::audit::{Finding, audit};
use clinvault::client::ledger::monitor_self;
use clinvault::client::reports::{TransferOptions, check_grant_for_wrap, download};
use clinvault::ledger::{Entry, RotationBy, keys_hash};
use clinvault::seal::{PublicKeys, UserSecrets};
use clinvault::server::ledger_store::{AppendKey, append};
use common::clinic::{Clinic, clinic_with, release, report_bytes, upload_file, write_file};
use common::{Db, cli, six_digits};

fn rotation(user: uuid::Uuid, old: &PublicKeys, new: &PublicKeys, admin: uuid::Uuid) -> Entry {
    Entry::KeyRotated {
        time_ms: chrono::Utc::now().timestamp_millis(),
        user_id: *user.as_bytes(),
        old_keys_hash: keys_hash(&old.x25519, &old.ed25519),
        x25519_public: new.x25519,
        ed25519_public: new.ed25519,
        by: RotationBy::Admin,
        authoriser_id: *admin.as_bytes(),
    }
}

async fn point_row_at(c: &Clinic, user: uuid::Uuid, keys: &PublicKeys, index: u64) {
    sqlx::query("UPDATE users SET x25519_pub = $1, ed25519_pub = $2, key_index = $3 WHERE id = $4")
        .bind(keys.x25519.to_vec())
        .bind(keys.ed25519.to_vec())
        .bind(index as i64)
        .bind(user.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
}

/// Otto (doc2) has asked for a grant on the author's report, approved by code; the author's
/// client has seen Otto's key. Returns the report and grant ids.
async fn granted(c: &Clinic, dir: &std::path::Path) -> (uuid::Uuid, uuid::Uuid) {
    let out = upload_file(
        c,
        &write_file(dir, "r.pdf", &report_bytes(20_000, b"otto")),
        "R",
    )
    .await;
    release(c).await;
    let g = c.doc2.c.grant_request(out.report_id).await.unwrap();
    let code = six_digits(&c.ts.last_mail(&c.pat.email));
    c.doc2
        .c
        .otp_verify(g.request_id.unwrap(), &code)
        .await
        .unwrap();
    let l = c.doc.ledger().await.unwrap();
    check_grant_for_wrap(&c.doc.c, &l, g.id).await.unwrap();
    (out.report_id, g.id)
}

async fn rotated(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let (report, grant) = granted(&c, work.path()).await;
    let old = c.doc2.me.secrets.public();
    let before_fp = clinvault::seal::fingerprint(&old);
    let new_secrets = UserSecrets::generate().unwrap();
    let new = new_secrets.public();
    let new_fp = clinvault::seal::fingerprint(&new);
    let index =
        c.ts.handle
            .append_for_tests(&[(rotation(c.doc2.id, &old, &new, c.admin.id), vec![c.doc2.id])])
            .await
            .unwrap()[0];
    point_row_at(&c, c.doc2.id, &new, index).await;

    // The author's client: loud, and no wrap.
    let l = c.doc.ledger().await.unwrap();
    let e = check_grant_for_wrap(&c.doc.c, &l, grant)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyRotated(_)), "{e}");
    let text = e.to_string();
    println!("author's client: {text}");
    for want in [
        "James Wilson's key changed on",
        "authorised by the clinic administrator",
        &format!("ledger entry {index}"),
        "compare fingerprints before sharing",
        &before_fp,
        &new_fp,
        "clinvault accept-key --user",
    ] {
        assert!(text.contains(want), "{want:?} missing: {text}");
    }
    // Accepted after comparing: the wrap check passes and names the new fingerprint.
    let change = l.accept_key_change(c.doc2.id).await.unwrap();
    assert_eq!(change.before, before_fp);
    assert_eq!(change.now, new_fp);
    assert_eq!(change.rotations.len(), 1);
    let ok = check_grant_for_wrap(&c.doc.c, &l, grant).await.unwrap();
    assert_eq!(ok.reader_fingerprint, new_fp);

    // Otto's own client: the new keys pass the self-check, the old ones do not.
    let mine = c.doc2.state.path();
    let e = monitor_self(&c.doc2.c, mine, None, 3600, &c.doc2.me)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::Impersonation { .. }), "{e}");

    // The author rotates too: the report signed with the old key still verifies for the
    // patient, whose client saw the old key.
    let pat_l = c.pat.ledger().await.unwrap();
    let author_old = c.doc.me.secrets.public();
    let author_new = UserSecrets::generate().unwrap().public();
    let i2 =
        c.ts.handle
            .append_for_tests(&[(
                rotation(c.doc.id, &author_old, &author_new, c.admin.id),
                vec![c.doc.id],
            )])
            .await
            .unwrap()[0];
    point_row_at(&c, c.doc.id, &author_new, i2).await;
    let pat_l2 = c.pat.ledger().await.unwrap();
    drop(pat_l);
    let opts = TransferOptions::new(2);
    download(
        &c.pat.c,
        &c.pat.me,
        &pat_l2,
        report,
        &work.path().join("back.pdf"),
        &opts,
    )
    .await
    .expect("a report signed before the rotation still verifies");

    // The audit: both rotations listed, no problem.
    let al = c.auditor.ledger().await.unwrap();
    let s = audit(&c.auditor.c, &al, false).await.unwrap();
    assert!(s.findings.is_empty(), "{:?}", s.findings);
    let listed: Vec<u64> = s.rotations.iter().map(|r| r.0).collect();
    assert_eq!(listed, vec![index, i2]);
    assert!(s.rotations[0].2.contains(&c.admin.id.to_string()));
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(a_rotation_is_shown_before_any_wrap, rotated);

async fn forged(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let (_, grant) = granted(&c, work.path()).await;
    let old = c.doc2.me.secrets.public();
    let new = UserSecrets::generate().unwrap().public();
    // Database access alone: a well-formed rotation, but not under the server's append key.
    let mut tx = c.ts.handle.db().begin().await.unwrap();
    let not_the_servers = AppendKey::new(clinvault::seal::random_array::<32>().unwrap());
    let index = append(
        &mut tx,
        &not_the_servers,
        &rotation(c.doc2.id, &old, &new, c.admin.id),
        &[c.doc2.id.to_string()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    point_row_at(&c, c.doc2.id, &new, index).await;
    let e = c.doc.ledger().await.map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("the ledger signer refuses"), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "ledger entry {index} has no valid append authenticator"
        )),
        "{e}"
    );

    // A server that signs anything (test-only hook): the audit flags the entry, and a
    // rotation that does not replace Otto's keys is refused by the author's client.
    c.ts.handle.sign_anything_for_tests();
    let al = c.auditor.ledger().await.unwrap();
    let s = audit(&c.auditor.c, &al, false).await.unwrap();
    assert!(s.findings.contains(&Finding::Unauthenticated { index }));
    let stranger = UserSecrets::generate().unwrap().public();
    let bad =
        c.ts.handle
            .append_for_tests(&[(
                rotation(c.doc2.id, &stranger, &stranger, c.admin.id),
                vec![c.doc2.id],
            )])
            .await
            .unwrap()[0];
    point_row_at(&c, c.doc2.id, &stranger, bad).await;
    let l = c.doc.ledger().await.unwrap();
    let e = check_grant_for_wrap(&c.doc.c, &l, grant)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::Ledger(_)), "{e}");
    assert!(e.to_string().contains("does not replace"), "{e}");
    let s = audit(&c.auditor.c, &c.auditor.ledger().await.unwrap(), false)
        .await
        .unwrap();
    assert!(
        s.findings
            .iter()
            .any(|f| matches!(f, Finding::BadRotation { index: i, .. } if *i == bad)),
        "{:?}",
        s.findings
    );
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(a_database_only_rotation_is_refused, forged);

/// The administrator's reset end to end: a mailed code, new keys made by the user's own
/// client, the kind 10 entry naming the administrator, every session ended, the old password
/// and the code dead; the author's client then refuses to wrap until the change is accepted.
async fn admin_reset(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let (report, grant) = granted(&c, work.path()).await;
    // Otto reads the report before the reset (the author wraps it to his old keys).
    let l0 = c.doc.ledger().await.unwrap();
    let check = check_grant_for_wrap(&c.doc.c, &l0, grant).await.unwrap();
    clinvault::client::reports::confirm_wrap(&c.doc.c, &c.doc.me, &l0, &check)
        .await
        .unwrap();
    let new_password = "seven lanterns drift over the harbour";
    let e = c.admin.c.admin_key_reset(c.pat.id).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"), "patients: {e}");
    let e = c.doc.c.admin_key_reset(c.doc2.id).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "only admins: {e}");
    c.admin.c.admin_key_reset(c.doc2.id).await.unwrap();
    let code = common::invite_code(&c.ts.last_mail(&c.doc2.email));
    // Someone else's address with the code: refused.
    let e =
        c.ts.client()
            .complete_key_reset(&c.doc.email, &code, new_password)
            .await
            .unwrap_err();
    assert_eq!(e.code(), Some("code_invalid"), "{e}");
    let mut fresh = c.ts.client();
    let (logged, index) = fresh
        .complete_key_reset(&c.doc2.email, &code, new_password)
        .await
        .unwrap();
    let old = c.doc2.me.secrets.public();
    let new = logged.secrets.public();
    assert_ne!(new, old, "new keys");
    common::assert_key_rotated(
        c.ts.handle.db(),
        index,
        c.doc2.id,
        (&old, &new),
        RotationBy::Admin,
        *c.admin.id.as_bytes(),
    )
    .await;
    let e = c.doc2.c.me().await.unwrap_err();
    assert_eq!(e.code(), Some("session_revoked"), "old sessions end: {e}");
    let e =
        c.ts.client()
            .login(&c.doc2.email, common::PASSWORD)
            .await
            .unwrap_err();
    assert_eq!(e.code(), Some("invalid_credentials"), "{e}");
    let e =
        c.ts.client()
            .complete_key_reset(&c.doc2.email, &code, new_password)
            .await
            .unwrap_err();
    assert_eq!(e.code(), Some("code_used"), "{e}");
    // The user's own client accepts the new chain at login.
    let own = tempfile::tempdir().unwrap();
    monitor_self(&fresh, own.path(), None, 3600, &logged)
        .await
        .expect("the chain ends in the new keys");
    // The author's client: loud, no wrap until accepted.
    let l = c.doc.ledger().await.unwrap();
    let e = check_grant_for_wrap(&c.doc.c, &l, grant)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyRotated(_)), "{e}");
    assert!(
        e.to_string()
            .contains("authorised by the clinic administrator"),
        "{e}"
    );
    l.accept_key_change(c.doc2.id).await.unwrap();
    let ok = check_grant_for_wrap(&c.doc.c, &l, grant).await.unwrap();
    assert_eq!(ok.reader_fingerprint, clinvault::seal::fingerprint(&new));
    // Only the author's confirmation brings the report back to the reset user.
    let got = work.path().join("otto.pdf");
    let e = download(
        &fresh,
        &logged,
        &fresh_ledger(&fresh).await,
        report,
        &got,
        &TransferOptions::new(2),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    println!("before the re-wrap: {e}");
    assert!(!got.exists());
    clinvault::client::reports::confirm_wrap(&c.doc.c, &c.doc.me, &l, &ok)
        .await
        .unwrap();
    download(
        &fresh,
        &logged,
        &fresh_ledger(&fresh).await,
        report,
        &got,
        &TransferOptions::new(2),
    )
    .await
    .expect("readable once its author wrapped it again");
    assert!(
        std::fs::read(&got).unwrap() == std::fs::read(work.path().join("r.pdf")).unwrap(),
        "the same report"
    );
    let s = audit(&c.auditor.c, &c.auditor.ledger().await.unwrap(), false)
        .await
        .unwrap();
    assert!(s.findings.is_empty(), "{:?}", s.findings);
    assert_eq!(s.rotations.len(), 1);
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(an_admin_reset_is_a_visible_rotation, admin_reset);

async fn fresh_ledger(c: &clinvault::client::ApiClient) -> clinvault::client::ledger::Ledger {
    let dir = tempfile::tempdir().unwrap().keep();
    clinvault::client::ledger::Ledger::sync(c, &dir, None, 3600)
        .await
        .unwrap()
}

/// The commands: `admin reset-user`, `reset-keys` with the mailed code, `accept-key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_reset_and_accept() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let (admin_dir, otto_dir, author_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let url = c.ts.url.clone();
    let pw = [("CLINVAULT_PASSWORD", common::PASSWORD)];
    let (rc, out, err) = cli(
        admin_dir.path(),
        &url,
        &["login", "--email", "admin@clinic.test"],
        &pw,
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    let otto = c.doc2.id.to_string();
    // The author's client sees Otto's keys first.
    let (rc, out, err) = cli(
        author_dir.path(),
        &url,
        &["login", "--email", &c.doc.email],
        &pw,
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = cli(
        author_dir.path(),
        &url,
        &["accept-key", "--user", &otto],
        &[],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("nothing changed"), "{out}");
    let (rc, out, err) = cli(
        admin_dir.path(),
        &url,
        &["admin", "reset-user", "--user", &otto],
        &[],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    let code = common::invite_code(&c.ts.last_mail(&c.doc2.email));
    let (rc, out, err) = cli(
        otto_dir.path(),
        &url,
        &["reset-keys", "--email", &c.doc2.email],
        &[
            ("CLINVAULT_RESET_CODE", &code),
            (
                "CLINVAULT_NEW_PASSWORD",
                "seven lanterns drift over the harbour",
            ),
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("recorded in the ledger"), "{out}");
    let (rc, out, err) = cli(
        author_dir.path(),
        &url,
        &["accept-key", "--user", &otto],
        &[],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("authorised by the clinic administrator") && out.contains("accepted:"),
        "{out}"
    );
    c.ts.handle.shutdown().await.unwrap();
}

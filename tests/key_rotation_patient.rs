//! Issue 15 point 3, the patient's path: a patient who lost both password and recovery kit
//! registers again with the same address; `verify-email` mails a key-reset code to the address
//! on file (the answer to the caller is the same as for a new address); with it, the patient's
//! own client makes new keys for the same id, and the server appends kind 10 with `by = 2`
//! (authoriser nil) in the same transaction. The doctors' clients show the change loudly; a
//! database-only attacker can neither mint a code nor fake the rotation.

mod common;

use clinvault::api::Role;
use clinvault::client::ClientError;
use clinvault::client::ledger::monitor_self;
use clinvault::client::reports::{TransferOptions, check_grant_for_wrap, confirm_wrap, download};
use clinvault::ledger::{Entry, RotationBy, keys_hash};
use clinvault::seal::{UserSecrets, WRAPPED_DEK_LEN};
use clinvault::server::ledger_store::{AppendKey, append};
use common::clinic::{clinic_with, release, report_bytes, upload_file, write_file};
use common::{Db, cli};

const NEW_PASSWORD: &str = "seven lanterns drift over the harbour";

/// The 4×5 key-reset code in a mail, if there is one.
fn reset_code_in(mail: &str) -> Option<String> {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 23 && l.split('-').count() == 4 && !l.contains(' '))
        .map(str::to_string)
}

async fn fresh_ledger(c: &clinvault::client::ApiClient) -> clinvault::client::ledger::Ledger {
    let dir = tempfile::tempdir().unwrap().keep();
    clinvault::client::ledger::Ledger::sync(c, &dir, None, 3600)
        .await
        .unwrap()
}

async fn patient_reset(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let original = write_file(work.path(), "r.pdf", &report_bytes(20_000, b"pat"));
    let report = upload_file(&c, &original, "R").await.report_id;
    release(&c).await;
    // The author's client has seen the patient's keys (it wrapped the report to them).
    let l = c.doc.ledger().await.unwrap();
    l.user_keys(c.pat.id, Some(Role::Patient)).await.unwrap();

    // Registering again: the caller's answer looks like any other; only the mail differs.
    let stranger = c.ts.client();
    let fresh = stranger
        .verify_email("nobody-yet@example.org")
        .await
        .unwrap();
    let taken = stranger.verify_email(&c.pat.email).await.unwrap();
    assert_eq!(
        serde_json::to_value(&fresh)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        serde_json::to_value(&taken)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    let mail = c.ts.last_mail(&c.pat.email);
    assert!(mail.contains("clinvault recover"), "{mail}");
    let code = reset_code_in(&mail).expect("a key-reset code for a patient's address");
    // Staff addresses get the warning only (their path is the administrator's reset).
    stranger.verify_email(&c.doc2.email).await.unwrap();
    let staff_mail = c.ts.last_mail(&c.doc2.email);
    assert!(reset_code_in(&staff_mail).is_none(), "{staff_mail}");

    // The code is bound to the address it was mailed to.
    let e =
        c.ts.client()
            .complete_key_reset(&c.pat2.email, &code, NEW_PASSWORD)
            .await
            .unwrap_err();
    assert_eq!(e.code(), Some("code_invalid"), "{e}");
    let mut own = c.ts.client();
    let (logged, index) = own
        .complete_key_reset(&c.pat.email, &code, NEW_PASSWORD)
        .await
        .unwrap();
    assert_eq!(logged.login.user.id, c.pat.id, "the same account");
    let old = c.pat.me.secrets.public();
    let new = logged.secrets.public();
    assert_ne!(new, old, "new keys");
    common::assert_key_rotated(
        c.ts.handle.db(),
        index,
        c.pat.id,
        (&old, &new),
        RotationBy::VerifiedEmail,
        [0u8; 16],
    )
    .await;
    // Old sessions, the old password and the code are dead; the recovery kit is gone.
    let e = c.pat.c.me().await.unwrap_err();
    assert_eq!(e.code(), Some("session_revoked"), "{e}");
    let e =
        c.ts.client()
            .login(&c.pat.email, common::PASSWORD)
            .await
            .unwrap_err();
    assert_eq!(e.code(), Some("invalid_credentials"), "{e}");
    let e =
        c.ts.client()
            .complete_key_reset(&c.pat.email, &code, NEW_PASSWORD)
            .await
            .unwrap_err();
    assert_eq!(e.code(), Some("code_used"), "{e}");
    let kit: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT recovery_bundle FROM users WHERE id = $1")
            .bind(c.pat.id.to_string())
            .fetch_one(c.ts.handle.db())
            .await
            .unwrap();
    assert!(kit.is_none(), "the kit sealed the old keys");
    c.ts.client()
        .login(&c.pat.email, NEW_PASSWORD)
        .await
        .unwrap();
    monitor_self(
        &own,
        tempfile::tempdir().unwrap().path(),
        None,
        3600,
        &logged,
    )
    .await
    .expect("the patient's own client follows the chain to the new keys");

    // Nothing comes back by itself: the report's key was wrapped to the old keys.
    let got = work.path().join("back.pdf");
    let e = download(
        &own,
        &logged,
        &fresh_ledger(&own).await,
        report,
        &got,
        &TransferOptions::new(2),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    println!("before any re-wrap: {e}");
    assert!(!got.exists());

    // The author's client: loud, naming the patient's own verified email, both fingerprints.
    let l = c.doc.ledger().await.unwrap();
    let e = l
        .user_keys(c.pat.id, Some(Role::Patient))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyRotated(_)), "{e}");
    let text = e.to_string();
    println!("author's client: {text}");
    for want in [
        "authorised by their own verified email",
        &format!("ledger entry {index}"),
        "compare fingerprints before sharing",
        &clinvault::seal::fingerprint(&old),
        &clinvault::seal::fingerprint(&new),
        "clinvault accept-key --user",
    ] {
        assert!(text.contains(want), "{want:?} missing: {text}");
    }

    // The re-wrap request: one per report the patient held, in the author's grant list.
    let requests: Vec<_> = c
        .doc
        .c
        .grants()
        .await
        .unwrap()
        .into_iter()
        .filter(|g| g.reader_id == c.pat.id && g.status == "approved")
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let rewrap = requests[0].id;
    assert_eq!(requests[0].report_id, report);
    assert_eq!(requests[0].approval_index, Some(index));
    // The author's client: the same loud refusal before any confirm.
    let e = check_grant_for_wrap(&c.doc.c, &l, rewrap)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyRotated(_)), "{e}");
    // Nobody but the author wraps it: not another doctor, not the patient for themselves.
    let junk = vec![0u8; WRAPPED_DEK_LEN];
    let new_hash = keys_hash(&new.x25519, &new.ed25519);
    let e = c
        .doc2
        .c
        .grant_wrap_raw(rewrap, junk.clone(), Some(new_hash))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "another doctor: {e}");
    let e = own
        .grant_wrap_raw(rewrap, junk.clone(), Some(new_hash))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "the patient themselves: {e}");
    // The author, to the old keys (a stale client) or naming no keys: refused.
    let e = c
        .doc
        .c
        .grant_wrap_raw(
            rewrap,
            junk.clone(),
            Some(keys_hash(&old.x25519, &old.ed25519)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("conflict"), "old keys: {e}");
    let e = c
        .doc
        .c
        .grant_wrap_raw(rewrap, junk.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("bad_request"), "no keys named: {e}");
    // Still nothing for the patient.
    assert!(
        download(
            &own,
            &logged,
            &fresh_ledger(&own).await,
            report,
            &got,
            &TransferOptions::new(2)
        )
        .await
        .is_err()
    );
    // The author compares fingerprints, accepts, and confirms by hand.
    l.accept_key_change(c.pat.id).await.unwrap();
    let ok = check_grant_for_wrap(&c.doc.c, &l, rewrap).await.unwrap();
    assert_eq!(ok.rotation, Some(index));
    assert_eq!(ok.reader_fingerprint, clinvault::seal::fingerprint(&new));
    confirm_wrap(&c.doc.c, &c.doc.me, &l, &ok).await.unwrap();
    // A replay of the confirm, or of a wrap, is refused.
    let e = confirm_wrap(&c.doc.c, &c.doc.me, &l, &ok)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.code(), Some("not_approved"), "{e}");
    let e = c
        .doc
        .c
        .grant_wrap_raw(rewrap, junk, Some(new_hash))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("not_approved"), "{e}");
    // The author cannot take the patient's own report away again.
    let e = c.doc.c.grant_revoke(rewrap).await.unwrap_err();
    assert_eq!(e.code(), Some("invalid_status"), "{e}");
    download(
        &own,
        &logged,
        &fresh_ledger(&own).await,
        report,
        &got,
        &TransferOptions::new(2),
    )
    .await
    .expect("readable once its author confirmed the re-wrap");
    assert!(
        std::fs::read(&got).unwrap() == std::fs::read(&original).unwrap(),
        "the same bytes"
    );
    let s =
        clinvault::client::audit::audit(&c.auditor.c, &c.auditor.ledger().await.unwrap(), false)
            .await
            .unwrap();
    assert!(s.findings.is_empty(), "{:?}", s.findings);
    assert_eq!(s.rotations.len(), 1);
    assert!(
        s.rotations[0].2.contains("verified email"),
        "{:?}",
        s.rotations
    );
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(a_patient_resets_keys_by_a_mailed_code, patient_reset);

/// A database-only attacker: a code row they plant cannot be used (its MAC needs the server's
/// pepper), and a `by = 2` rotation they append is refused by every client (no append
/// authenticator under the server's key).
async fn database_only(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let planted = "ABCDE-FGHJK-LMNPQ-RSTUV";
    // Without the server's pepper the attacker can only guess what the route will compute.
    let wrong_pepper = clinvault::seal::random_array::<32>().unwrap().to_vec();
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query(
        "INSERT INTO key_resets (code_mac, user_id, admin_id, created_at, expires_at) \
         VALUES ($1, $2, NULL, $3, $4)",
    )
    .bind(wrong_pepper)
    .bind(c.pat.id.to_string())
    .bind(now)
    .bind(now + 3_600_000)
    .execute(c.ts.handle.db())
    .await
    .unwrap();
    let e =
        c.ts.client()
            .complete_key_reset(&c.pat.email, planted, NEW_PASSWORD)
            .await
            .unwrap_err();
    assert_eq!(e.code(), Some("code_invalid"), "{e}");

    let l = c.doc.ledger().await.unwrap();
    l.user_keys(c.pat.id, Some(Role::Patient)).await.unwrap();
    let old = c.pat.me.secrets.public();
    let new = UserSecrets::generate().unwrap().public();
    let mut tx = c.ts.handle.db().begin().await.unwrap();
    let not_the_servers = AppendKey::new(clinvault::seal::random_array::<32>().unwrap());
    let index = append(
        &mut tx,
        &not_the_servers,
        &Entry::KeyRotated {
            time_ms: now,
            user_id: *c.pat.id.as_bytes(),
            old_keys_hash: keys_hash(&old.x25519, &old.ed25519),
            x25519_public: new.x25519,
            ed25519_public: new.ed25519,
            by: RotationBy::VerifiedEmail,
            authoriser_id: [0u8; 16],
        },
        &[c.pat.id.to_string()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE users SET x25519_pub = $1, ed25519_pub = $2, key_index = $3 WHERE id = $4")
        .bind(new.x25519.to_vec())
        .bind(new.ed25519.to_vec())
        .bind(index as i64)
        .bind(c.pat.id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let e = c.doc.ledger().await.map(|_| ()).unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "ledger entry {index} has no valid append authenticator"
        )),
        "{e}"
    );
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(a_database_only_patient_rotation_is_refused, database_only);

/// A reset doctor's own reports (they were the author, their wrap was made at commit): the
/// re-wrap request goes to the report's other key holder, its patient, whose client shows the
/// rotation and wraps only after accepting; the doctor then reads the same bytes.
async fn author_reset(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let original = write_file(work.path(), "r.pdf", &report_bytes(20_000, b"own"));
    let report = upload_file(&c, &original, "R").await.report_id;
    release(&c).await;
    let pl = c.pat.ledger().await.unwrap();
    pl.user_keys(c.doc.id, Some(Role::Doctor)).await.unwrap();
    c.admin.c.admin_key_reset(c.doc.id).await.unwrap();
    let code = reset_code_in(&c.ts.last_mail(&c.doc.email)).unwrap();
    let mut own = c.ts.client();
    let (logged, index) = own
        .complete_key_reset(&c.doc.email, &code, NEW_PASSWORD)
        .await
        .unwrap();
    let got = work.path().join("back.pdf");
    let reread = async |own: &clinvault::client::ApiClient| {
        download(
            own,
            &logged,
            &fresh_ledger(own).await,
            report,
            &got,
            &TransferOptions::new(2),
        )
        .await
        .map(|_| ())
    };
    reread(&own).await.expect_err("no key before the re-wrap");
    let rewrap = c
        .pat
        .c
        .grants()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.reader_id == c.doc.id && g.report_id == report)
        .expect("a re-wrap request for the patient")
        .id;
    // The author may not wrap it for themselves (they have no key anyway).
    let e = own
        .grant_wrap_raw(rewrap, vec![0u8; WRAPPED_DEK_LEN], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    // The patient's client, synced after the rotation (its known keys kept from before).
    let pl = c.pat.ledger().await.unwrap();
    let e = check_grant_for_wrap(&c.pat.c, &pl, rewrap)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, ClientError::KeyRotated(_)), "{e}");
    assert!(
        e.to_string()
            .contains("authorised by the clinic administrator"),
        "{e}"
    );
    pl.accept_key_change(c.doc.id).await.unwrap();
    let ok = check_grant_for_wrap(&c.pat.c, &pl, rewrap).await.unwrap();
    assert_eq!(ok.rotation, Some(index));
    confirm_wrap(&c.pat.c, &c.pat.me, &pl, &ok).await.unwrap();
    reread(&own)
        .await
        .expect("readable after the patient's re-wrap");
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&original).unwrap());
    let s =
        clinvault::client::audit::audit(&c.auditor.c, &c.auditor.ledger().await.unwrap(), false)
            .await
            .unwrap();
    assert!(s.findings.is_empty(), "{:?}", s.findings);
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(
    a_reset_authors_reports_come_back_through_the_patient,
    author_reset
);

/// The commands end to end: the patient's `reset-keys` with the code `verify-email` mailed;
/// the author's `grant list` shows the re-wrap, `grant confirm` refuses loudly until
/// `accept-key`, then wraps; the patient's `download` gives the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_patient_reset_and_rewrap() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let original = write_file(work.path(), "r.pdf", &report_bytes(20_000, b"cli"));
    let report = upload_file(&c, &original, "R").await.report_id.to_string();
    release(&c).await;
    let (pat_dir, doc_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = c.ts.url.clone();
    let pat = c.pat.id.to_string();
    let pw = [("CLINVAULT_PASSWORD", common::PASSWORD)];
    let (rc, out, err) = cli(
        doc_dir.path(),
        &url,
        &["login", "--email", &c.doc.email],
        &pw,
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = cli(doc_dir.path(), &url, &["accept-key", "--user", &pat], &[]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("nothing changed"), "{out}");

    c.ts.client().verify_email(&c.pat.email).await.unwrap();
    let code = reset_code_in(&c.ts.last_mail(&c.pat.email)).unwrap();
    let new_pw = [
        ("CLINVAULT_RESET_CODE", code.as_str()),
        ("CLINVAULT_NEW_PASSWORD", NEW_PASSWORD),
    ];
    let (rc, out, err) = cli(
        pat_dir.path(),
        &url,
        &["reset-keys", "--email", &c.pat.email],
        &new_pw,
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("recorded in the ledger"), "{out}");

    let (rc, out, err) = cli(doc_dir.path(), &url, &["grant", "list"], &[]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("re-wrap after their key rotation"))
        .unwrap_or_else(|| panic!("no re-wrap request listed: {out}"));
    let grant = line.split_whitespace().next().unwrap().to_string();
    let doc_pw = [("CLINVAULT_PASSWORD", common::PASSWORD)];
    let (rc, out, err) = cli(
        doc_dir.path(),
        &url,
        &["grant", "confirm", &grant, "--yes"],
        &doc_pw,
    )
    .await;
    assert_ne!(rc, 0, "no wrap before the change is accepted: {out}");
    assert!(
        err.contains("KEY ROTATED") && err.contains("their own verified email"),
        "{err}"
    );
    let (rc, out, err) = cli(doc_dir.path(), &url, &["accept-key", "--user", &pat], &[]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("their own verified email"), "{out}");
    let (rc, out, err) = cli(
        doc_dir.path(),
        &url,
        &["grant", "confirm", &grant, "--yes"],
        &doc_pw,
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("re-wrap of their own report"), "{out}");

    let got = work.path().join("back.pdf");
    let (rc, out, err) = cli(
        pat_dir.path(),
        &url,
        &["download", &report, "-o", got.to_str().unwrap()],
        &[("CLINVAULT_PASSWORD", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&original).unwrap());
    c.ts.handle.shutdown().await.unwrap();
}

/// A server cannot re-point someone else's grant at its reader's rotation to make the reader's
/// client skip the grant's expiry: a kind 10 approval counts only for the reader's own report.
async fn repointed(db: Db) {
    let c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let original = write_file(work.path(), "r.pdf", &report_bytes(20_000, b"otto"));
    let report = upload_file(&c, &original, "R").await.report_id;
    release(&c).await;
    let g = c.doc2.c.grant_request(report).await.unwrap();
    let otp = common::six_digits(&c.ts.last_mail(&c.pat.email));
    c.doc2
        .c
        .otp_verify(g.request_id.unwrap(), &otp)
        .await
        .unwrap();
    let l = c.doc.ledger().await.unwrap();
    l.user_keys(c.doc2.id, Some(Role::Doctor)).await.unwrap();
    // Otto is reset; the author wraps his grant again after accepting the new keys.
    c.admin.c.admin_key_reset(c.doc2.id).await.unwrap();
    let code = reset_code_in(&c.ts.last_mail(&c.doc2.email)).unwrap();
    let mut own = c.ts.client();
    let (logged, rotation) = own
        .complete_key_reset(&c.doc2.email, &code, NEW_PASSWORD)
        .await
        .unwrap();
    let l = c.doc.ledger().await.unwrap();
    l.accept_key_change(c.doc2.id).await.unwrap();
    let ok = check_grant_for_wrap(&c.doc.c, &l, g.id).await.unwrap();
    assert_eq!(ok.rotation, None, "an ordinary grant");
    confirm_wrap(&c.doc.c, &c.doc.me, &l, &ok).await.unwrap();
    let got = work.path().join("otto.pdf");
    download(
        &own,
        &logged,
        &fresh_ledger(&own).await,
        report,
        &got,
        &TransferOptions::new(2),
    )
    .await
    .expect("the grant in force");
    std::fs::remove_file(&got).unwrap();
    // The database points the grant's approval at Otto's rotation entry.
    sqlx::query("UPDATE grants SET approval_index = $1 WHERE id = $2")
        .bind(rotation as i64)
        .bind(g.id.to_string())
        .execute(c.ts.handle.db())
        .await
        .unwrap();
    let e = download(
        &own,
        &logged,
        &fresh_ledger(&own).await,
        report,
        &got,
        &TransferOptions::new(2),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(e.to_string().contains("not your own"), "{e}");
    assert!(!got.exists());
    c.ts.handle.shutdown().await.unwrap();
}
both_backends!(a_grant_repointed_at_a_rotation_is_refused, repointed);

//! Report bundles end to end (issue 16): `clinvault export` against a real server, the server
//! stopped, then `clinvault verify-bundle` with no server gives the byte-identical plaintext;
//! the wrong ledger key is refused; only the patient or the author can export. SQLite and
//! PostgreSQL.

#[macro_use]
mod common;

use std::path::Path;

use clinvault::bundle::export::export;
use clinvault::client::reports::{check_grant_for_wrap, confirm_wrap};
use common::clinic::{clinic_with, release, report_bytes, upload_file, write_file};
use common::{Db, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_clinvault");

/// Runs the CLI with its own config and state folder (`server` or none): (exit code, stdout,
/// stderr).
async fn cli(dir: &Path, server: Option<&str>, args: &[&str]) -> (i32, String, String) {
    write_config(dir, server);
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .args(args)
        .env_remove("CLINVAULT_LOG")
        .env("CLINVAULT_PASSWORD", PASSWORD)
        .stdin(std::process::Stdio::null())
        .current_dir(dir);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client config of its own: `server` or none, a state folder in `dir`.
fn write_config(dir: &Path, server: Option<&str>) {
    let server = server
        .map(|u| format!("server = \"{u}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[client]\n{server}state_dir = \"{}\"\n\n[client.kdf_floor]\nm_kib = 256\nt = 1\np = 1\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
}

async fn export_then_verify_offline(db: Db) {
    let mut c = clinic_with(db, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    // Three chunks of 1 MiB, the last one short.
    let data = report_bytes(2 * 1024 * 1024 + 1234, b"bundle-marker-16");
    let file = write_file(work.path(), "echo.pdf", &data);
    let report = upload_file(&c, &file, "Echo for the bundle")
        .await
        .report_id;
    release(&c).await;
    let id = report.to_string();
    let url = c.ts.url.clone();

    // The patient exports with the CLI.
    let pat = tempfile::tempdir().unwrap();
    let (rc, out, err) = cli(pat.path(), Some(&url), &["login", "--email", &c.pat.email]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = cli(pat.path(), Some(&url), &["export", &id, "-o", "echo.cvb"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("holds the report key in clear"),
        "the export says the key is in the file: {out}"
    );
    let bundle_path = pat.path().join("echo.cvb");
    let bundle = std::fs::read(&bundle_path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&bundle_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o077,
        0,
        "a bundle holds a key: readable by its owner only"
    );
    // Never over an existing file.
    let (rc, out, err) = cli(pat.path(), Some(&url), &["export", &id, "-o", "echo.cvb"]).await;
    assert_ne!(rc, 0, "{out}");
    assert!(err.contains("exists"), "{err}");
    assert_eq!(std::fs::read(&bundle_path).unwrap(), bundle);

    // The author may export too (library path); nobody else can.
    let mut l = c.doc.ledger().await.unwrap();
    let by_author = export(&c.doc.c, &c.doc.me, &mut l, report)
        .await
        .expect("the author exports");
    assert!(
        by_author.verified.plaintext.is_empty(),
        "the exporter keeps no second copy"
    );
    let trust = clinvault::bundle::Trust {
        ledger_key: *l.key(),
        witnesses: vec![],
        quorum: 0,
    };
    let v = clinvault::bundle::verify_bytes(&by_author.bytes, &trust).unwrap();
    assert_eq!(&v.plaintext[..], &data[..]);
    for other in [&c.doc2, &c.pat2] {
        let mut l = other.ledger().await.unwrap();
        let e = export(&other.c, &other.me, &mut l, report)
            .await
            .expect_err("neither patient nor author");
        assert!(
            matches!(e, clinvault::client::ClientError::Server { .. }),
            "the server refuses them: {e}"
        );
    }
    // A doctor who reads it through a grant holds the key, but the disclosure is not theirs
    // to make: their client refuses.
    let g = c.doc2.c.grant_request(report).await.unwrap();
    let code = common::six_digits(&c.ts.last_mail(&c.pat.email));
    c.doc2
        .c
        .otp_verify(g.request_id.expect("code request"), &code)
        .await
        .unwrap();
    let l = c.doc.ledger().await.unwrap();
    let check = check_grant_for_wrap(&c.doc.c, &l, g.id).await.unwrap();
    confirm_wrap(&c.doc.c, &c.doc.me, &l, &check).await.unwrap();
    let mut l = c.doc2.ledger().await.unwrap();
    let e = export(&c.doc2.c, &c.doc2.me, &mut l, report)
        .await
        .expect_err("a grant reader may read, not export");
    assert!(
        e.to_string()
            .contains("only the patient or the author of report"),
        "{e}"
    );
    let ledger_key = c.pat.ledger().await.unwrap().key().to_string();

    // No server from here on.
    c.ts.stop().await;
    assert!(
        c.pat.c.health().await.is_err(),
        "the server must really be down"
    );

    let off = tempfile::tempdir().unwrap();
    std::fs::copy(&bundle_path, off.path().join("echo.cvb")).unwrap();
    let (rc, out, err) = cli(
        off.path(),
        None,
        &[
            "verify-bundle",
            "echo.cvb",
            "--ledger-key",
            &ledger_key,
            "-o",
            "echo.pdf",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(
        std::fs::read(off.path().join("echo.pdf")).unwrap(),
        data,
        "byte-identical plaintext"
    );
    assert!(out.contains("every check passed"), "{out}");
    assert!(out.contains(&format!("report     {id}")), "{out}");
    assert!(out.contains(&ledger_key), "{out}");
    assert!(
        out.contains(&format!("author {}", c.doc.id)),
        "who signed it: {out}"
    );
    // Never over an existing file, even after every check.
    let (rc, _, err) = cli(
        off.path(),
        None,
        &[
            "verify-bundle",
            "echo.cvb",
            "--ledger-key",
            &ledger_key,
            "-o",
            "echo.pdf",
        ],
    )
    .await;
    assert_ne!(rc, 0);
    assert!(err.contains("exists"), "{err}");

    // Another ledger's key: refused, naming the check, and nothing written.
    let other = clinvault::ledger::LedgerKey::from_signing_key(
        &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
    )
    .to_string();
    let (rc, out, err) = cli(
        off.path(),
        None,
        &[
            "verify-bundle",
            "echo.cvb",
            "--ledger-key",
            &other,
            "-o",
            "wrong.pdf",
        ],
    )
    .await;
    assert_ne!(rc, 0, "{out}");
    assert!(err.contains("check failed: signed head"), "{err}");
    assert!(!off.path().join("wrong.pdf").exists());

    // No key given and none remembered: refused, saying how to pass one.
    let (rc, _, err) = cli(off.path(), None, &["verify-bundle", "echo.cvb"]).await;
    assert_ne!(rc, 0);
    assert!(err.contains("--ledger-key"), "{err}");

    // The patient's own client remembers the key it pinned for the server, still offline.
    let (rc, out, err) = cli(
        pat.path(),
        Some(&url),
        &["verify-bundle", "echo.cvb", "-o", "again.pdf"],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("(the key this client pinned for http://127.0.0.1:"),
        "{out}"
    );
    assert_eq!(std::fs::read(pat.path().join("again.pdf")).unwrap(), data);

    // A flipped byte in a chunk: refused, naming the chunks.
    let mut bad = bundle.clone();
    let n = bad.len();
    bad[n - 100] ^= 1;
    std::fs::write(off.path().join("bad.cvb"), &bad).unwrap();
    let (rc, _, err) = cli(
        off.path(),
        None,
        &[
            "verify-bundle",
            "bad.cvb",
            "--ledger-key",
            &ledger_key,
            "-o",
            "bad.pdf",
        ],
    )
    .await;
    assert_ne!(rc, 0);
    assert!(err.contains("check failed: chunks"), "{err}");
    assert!(!off.path().join("bad.pdf").exists());
}
both_backends!(export_and_offline_verify, export_then_verify_offline);

/// A lab report a station uploaded under a doctor's order: the patient exports it, the server
/// is stopped, and `verify-bundle` checks the station's key, the order (kind 13) and the
/// doctor's key entry offline, as a reader does online, and gives the byte-identical
/// plaintext. The ordering doctor cannot export it (not its author); the station reads
/// nothing, so it cannot either.
async fn station_report_exports_and_verifies_offline(db: Db) {
    use clinvault::api::{OrderRequest, Role};
    use clinvault::client::reports::UploadOptions;
    use clinvault::client::station::upload_for_order;

    let mut c = clinic_with(db, |_| {}).await;
    let admin = c.ts.login("admin@clinic.test").await;
    c.ts.staff(&admin, Role::Station, "lab1@clinic.test", "Lab-1", "")
        .await;
    let station = common::clinic::user(&c.ts, "lab1@clinic.test").await;
    let order = c
        .doc
        .c
        .create_order(&OrderRequest {
            station: "Lab-1".into(),
            patient_id: c.pat.id,
            days: None,
        })
        .await
        .expect("order");
    let work = tempfile::tempdir().unwrap();
    let data = report_bytes(70 * 1024 + 5, b"LAB-BUNDLE");
    let file = write_file(work.path(), "panel.bin", &data);
    let sl = station.ledger().await.unwrap();
    let opts = UploadOptions {
        state_dir: station.state.path(),
        chunk_size: 16 * 1024,
        transfers: 2,
        title: "Lab panel".into(),
        note: String::new(),
        cancel: None,
        progress: None,
    };
    let report = upload_for_order(&station.c, &station.me, &sl, &order, &file, &opts, None)
        .await
        .expect("the station uploads")
        .report_id;
    release(&c).await;
    let id = report.to_string();
    let url = c.ts.url.clone();

    let mut l = c.doc.ledger().await.unwrap();
    let e = export(&c.doc.c, &c.doc.me, &mut l, report)
        .await
        .expect_err("the ordering doctor reads it but is not its author");
    assert!(
        e.to_string().contains("only the patient or the author"),
        "{e}"
    );
    let mut l = station.ledger().await.unwrap();
    let e = export(&station.c, &station.me, &mut l, report)
        .await
        .expect_err("a station reads nothing");
    assert!(
        matches!(e, clinvault::client::ClientError::Server { .. }),
        "the server refuses the station: {e}"
    );

    let pat = tempfile::tempdir().unwrap();
    let (rc, out, err) = cli(pat.path(), Some(&url), &["login", "--email", &c.pat.email]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = cli(pat.path(), Some(&url), &["export", &id, "-o", "lab.cvb"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let bundle = std::fs::read(pat.path().join("lab.cvb")).unwrap();
    let decoded = clinvault::bundle::Bundle::from_bytes(&bundle).unwrap();
    let st = decoded
        .station
        .as_ref()
        .expect("the bundle carries the order");
    assert_eq!(st.order_entry.index, order.ledger_index);
    assert_eq!(st.order_entry.entry, order.entry);
    let ledger_key = c.pat.ledger().await.unwrap().key().to_string();

    c.ts.stop().await;
    assert!(c.pat.c.health().await.is_err(), "the server must be down");

    let off = tempfile::tempdir().unwrap();
    std::fs::write(off.path().join("lab.cvb"), &bundle).unwrap();
    let (rc, out, err) = cli(
        off.path(),
        None,
        &[
            "verify-bundle",
            "lab.cvb",
            "--ledger-key",
            &ledger_key,
            "-o",
            "lab.bin",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(
        std::fs::read(off.path().join("lab.bin")).unwrap(),
        data,
        "byte-identical plaintext"
    );
    assert!(
        out.contains(&format!(
            "submitted  by station {} for doctor {}",
            station.id, c.doc.id
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "order      {} at ledger entry {}",
            order.id, order.ledger_index
        )),
        "{out}"
    );
    assert!(out.contains("names      not proven"), "{out}");

    // A flipped byte in the order entry: refused, naming the order's inclusion.
    let mut bad = bundle.clone();
    let at = bad
        .windows(order.entry.len())
        .position(|w| w == order.entry.as_slice())
        .expect("the order entry is in the file");
    bad[at + order.entry.len() - 1] ^= 1;
    std::fs::write(off.path().join("bad.cvb"), &bad).unwrap();
    let (rc, _, err) = cli(
        off.path(),
        None,
        &[
            "verify-bundle",
            "bad.cvb",
            "--ledger-key",
            &ledger_key,
            "-o",
            "bad.bin",
        ],
    )
    .await;
    assert_ne!(rc, 0);
    assert!(
        err.contains("check failed: inclusion of the station order entry"),
        "{err}"
    );
    assert!(!off.path().join("bad.bin").exists());
}
both_backends!(
    station_report_bundle,
    station_report_exports_and_verifies_offline
);

/// With a witness: the exporter's client requires its cosignature (quorum 1), the bundle
/// carries it, and after the server and the witness are gone `verify-bundle --witness` names
/// the witness that vouches for the head; a quorum the bundle cannot meet is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn witness_cosignature_travels_in_the_bundle() {
    use clinvault::client::ledger::{Ledger, WitnessPolicy};
    use clinvault::witness::note::{SIG_COSIGNATURE_V1, SIG_ED25519, VerifierKey};
    use clinvault::witness::{Witness, spawn};
    use ed25519_dalek::SigningKey;

    let dir = tempfile::tempdir().unwrap();
    let secrets_path = dir.path().join("secrets.toml");
    let secrets = clinvault::server::secrets::ServerSecrets::load_or_create(&secrets_path).unwrap();
    let origin = "clinic.test/clinvault";
    let log_vkey = VerifierKey::new(
        origin,
        SIG_ED25519,
        SigningKey::from_bytes(secrets.ledger_seed())
            .verifying_key()
            .to_bytes(),
    )
    .unwrap();
    let w = std::sync::Arc::new(
        Witness::open(
            "witness.test/w1",
            SigningKey::from_bytes(&[5; 32]),
            &dir.path().join("witness-state.json"),
            vec![log_vkey],
        )
        .unwrap(),
    );
    let (addr, task) = spawn(w.clone(), "127.0.0.1:0").await.unwrap();
    let wkey = w.vkey();
    let endpoint = clinvault::config::WitnessEndpoint {
        url: format!("http://{addr}/"),
        vkey: wkey.to_string(),
    };
    let mut c = clinic_with(Db::Sqlite, |cfg| {
        cfg.server.secrets_file = secrets_path.display().to_string();
        cfg.server.ledger_origin = origin.into();
        cfg.server.witnesses = vec![endpoint];
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let data = report_bytes(5000, b"witnessed-report");
    let file = write_file(work.path(), "lab.txt", &data);
    let report = upload_file(&c, &file, "Lab, witnessed").await.report_id;
    release(&c).await;

    let policy = WitnessPolicy {
        witnesses: vec![wkey.clone()],
        quorum: 1,
    };
    let mut l = Ledger::sync_with(&c.pat.c, c.pat.state.path(), None, 3600, &policy)
        .await
        .unwrap();
    let done = export(&c.pat.c, &c.pat.me, &mut l, report)
        .await
        .expect("export under a witness quorum");
    assert_eq!(
        done.verified.cosigned_by,
        vec!["witness.test/w1".to_string()]
    );
    let key = l.key().to_string();
    let path = work.path().join("lab.cvb");
    clinvault::bundle::export::write_new_file(&path, &done.bytes).unwrap();

    c.ts.stop().await;
    task.abort();

    let off = tempfile::tempdir().unwrap();
    std::fs::copy(&path, off.path().join("lab.cvb")).unwrap();
    let wk = wkey.to_string();
    let (rc, out, err) = cli(
        off.path(),
        None,
        &[
            "verify-bundle",
            "lab.cvb",
            "--ledger-key",
            &key,
            "--witness",
            &wk,
            "--witness-quorum",
            "1",
            "-o",
            "lab.txt",
        ],
    )
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("cosigned by witness.test/w1"), "{out}");
    assert!(out.contains(&format!("checkpoint {origin}")), "{out}");
    assert_eq!(std::fs::read(off.path().join("lab.txt")).unwrap(), data);

    // Without the witness's key its line is reported, not counted; a quorum then fails.
    let (rc, out, _) = cli(
        off.path(),
        None,
        &["verify-bundle", "lab.cvb", "--ledger-key", &key],
    )
    .await;
    assert_eq!(rc, 0);
    assert!(
        out.contains("not checked (no key given): witness.test/w1"),
        "{out}"
    );
    let stranger = VerifierKey::new(
        "witness.test/other",
        SIG_COSIGNATURE_V1,
        SigningKey::from_bytes(&[6; 32]).verifying_key().to_bytes(),
    )
    .unwrap()
    .to_string();
    let (rc, _, err) = cli(
        off.path(),
        None,
        &[
            "verify-bundle",
            "lab.cvb",
            "--ledger-key",
            &key,
            "--witness",
            &stranger,
            "--witness-quorum",
            "1",
        ],
    )
    .await;
    assert_ne!(rc, 0);
    assert!(err.contains("check failed: witness cosignatures"), "{err}");
}

/// Memory of `export` and `verify-bundle` for a 64 MiB report, measured with
/// `/usr/bin/time -v` (max RSS). Prints the figures; run by hand:
/// `cargo test --release --test bundle_export bundle_memory -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: prints peak memory of export and verify-bundle"]
async fn bundle_memory() {
    let mut c = clinic_with(Db::Sqlite, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let data = report_bytes(64 << 20, b"memory-marker-16");
    let file = write_file(work.path(), "big.bin", &data);
    let report = upload_file(&c, &file, "Big").await.report_id;
    release(&c).await;
    let url = c.ts.url.clone();
    let pat = tempfile::tempdir().unwrap();
    let (rc, out, err) = cli(pat.path(), Some(&url), &["login", "--email", &c.pat.email]).await;
    assert_eq!(rc, 0, "{out}{err}");
    let rss = |err: &str| {
        err.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Maximum resident set size (kbytes): ")
            })
            .map(|k| k.parse::<u64>().unwrap() / 1024)
            .unwrap()
    };
    let timed = |args: Vec<String>, dir: &Path, server: Option<&str>| {
        let server = server.map(str::to_string);
        let dir = dir.to_path_buf();
        async move {
            let mut all = vec!["-v".to_string(), BIN.to_string()];
            all.extend(args);
            write_config(&dir, server.as_deref());
            let out = std::process::Command::new("/usr/bin/time")
                .args(&all[..2])
                .arg("--config")
                .arg(dir.join("config.toml"))
                .args(&all[2..])
                .env("CLINVAULT_PASSWORD", PASSWORD)
                .current_dir(&dir)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{err}");
            err
        }
    };
    let id = report.to_string();
    let err = timed(
        vec!["export".into(), id, "-o".into(), "big.cvb".into()],
        pat.path(),
        Some(&url),
    )
    .await;
    let export_mib = rss(&err);
    let key = c.pat.ledger().await.unwrap().key().to_string();
    c.ts.stop().await;
    let err = timed(
        vec![
            "verify-bundle".into(),
            "big.cvb".into(),
            "--ledger-key".into(),
            key,
            "-o".into(),
            "big.out".into(),
        ],
        pat.path(),
        None,
    )
    .await;
    let verify_mib = rss(&err);
    assert_eq!(std::fs::read(pat.path().join("big.out")).unwrap(), data);
    println!(
        "64 MiB report, bundle {} bytes: export peak RSS {export_mib} MiB, verify-bundle -o peak RSS {verify_mib} MiB",
        std::fs::metadata(pat.path().join("big.cvb")).unwrap().len()
    );
}

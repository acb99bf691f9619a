//! Issue 11 figures: ledger appends per second and entries per second through head signing,
//! on SQLite, with append authenticators and the checking signer ("after"), and with a
//! replica of the pre-issue-11 code ("before": the same append SQL without the authenticator,
//! and a head signed over the stored root with no checks and no memory).
//!
//! `cargo run --example ledger_rate -- [ENTRIES]` (a measurement, not a test).

use std::time::Instant;

use clinvault::config::Config;
use clinvault::ledger::{Entry, SignedHead, Subtree, leaf_hash, node_hash};
use clinvault::server::ledger_store::{self, AppendKey};
use clinvault::server::secrets::ServerSecrets;
use sqlx::AnyConnection;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.data = dir.to_path_buf();
    c.server.demo = true;
    c
}

fn entry(i: u64) -> Entry {
    Entry::ReportAccess {
        time_ms: i as i64,
        report_id: [7; 16],
        reader_id: [8; 16],
        what: clinvault::ledger::AccessWhat::KeyServed,
    }
}

/// The append of the code before issue 11, verbatim but for the error type.
async fn old_append(conn: &mut AnyConnection, entry: &Entry) -> anyhow::Result<u64> {
    let size: i64 =
        sqlx::query_scalar("UPDATE ledger_state SET size = size + 1 WHERE id = 1 RETURNING size")
            .fetch_one(&mut *conn)
            .await?;
    let index = u64::try_from(size - 1)?;
    let bytes = entry.to_bytes();
    sqlx::query(
        "INSERT INTO ledger_entries (idx, kind, entry, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(size - 1)
    .bind(i64::from(entry.kind()))
    .bind(bytes.clone())
    .bind(0i64)
    .execute(&mut *conn)
    .await?;
    let mut hash = leaf_hash(&bytes);
    for s in Subtree::completed_by(index) {
        if s.level() > 0 {
            let left: Vec<u8> =
                sqlx::query_scalar("SELECT hash FROM ledger_nodes WHERE level = $1 AND idx = $2")
                    .bind(i64::from(s.level() - 1))
                    .bind((s.index() << 1) as i64)
                    .fetch_one(&mut *conn)
                    .await?;
            let left: [u8; 32] = left.try_into().map_err(|_| anyhow::anyhow!("node"))?;
            hash = node_hash(&left, &hash);
        }
        sqlx::query("INSERT INTO ledger_nodes (level, idx, hash) VALUES ($1, $2, $3)")
            .bind(i64::from(s.level()))
            .bind(s.index() as i64)
            .bind(hash.to_vec())
            .execute(&mut *conn)
            .await?;
    }
    Ok(index)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2000);
    for after in [false, true] {
        let dir = tempfile::tempdir()?;
        let handle = clinvault::server::start(config(dir.path())).await?;
        let secrets = ServerSecrets::load_or_create(&dir.path().join("secrets.toml"))?;
        let key = AppendKey::new(*secrets.append_key());
        let pool = handle.db().clone();
        let t = Instant::now();
        for i in 0..n {
            let mut tx = pool.begin().await?;
            if after {
                ledger_store::append(&mut tx, &key, &entry(i), &[])
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?;
            } else {
                old_append(&mut tx, &entry(i)).await?;
            }
            tx.commit().await?;
        }
        let append_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let size = if after {
            handle
                .ledger_head()
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?
                .head
                .tree_size
        } else {
            let mut conn = pool.acquire().await?;
            let size = ledger_store::size(&mut conn)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let root = ledger_store::root_at(&mut conn, size)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            let head = SignedHead::sign(
                size,
                root,
                0,
                &ed25519_dalek::SigningKey::from_bytes(secrets.ledger_seed()),
            );
            sqlx::query(
                "INSERT INTO ledger_heads (tree_size, time_ms, signed) VALUES ($1, $2, $3)",
            )
            .bind(size as i64)
            .bind(0i64)
            .bind(head.to_bytes().to_vec())
            .execute(&mut *conn)
            .await?;
            size
        };
        let sign_s = t.elapsed().as_secs_f64();
        println!(
            "{}: {n} appends in {append_s:.2} s = {:.0} appends/s; head over {size} entries ({n} new) signed in {:.1} ms = {:.0} entries/s",
            if after { "after " } else { "before" },
            n as f64 / append_s,
            sign_s * 1000.0,
            n as f64 / sign_s
        );
        handle.shutdown().await?;
    }
    Ok(())
}

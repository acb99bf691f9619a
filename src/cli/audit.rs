//! The auditor's replay and `clinvault ledger`.

use anyhow::{Result, bail};

use clinvault::api::Role;
use clinvault::client::audit::audit as run_audit;
use clinvault::config::Config;

use super::{ledger as sync_ledger, signed_in};

pub async fn audit(cfg: &Config, repair: bool) -> Result<()> {
    let (c, saved) = signed_in(cfg)?;
    if saved.role != Role::Auditor {
        bail!("the audit runs as an auditor account");
    }
    let l = sync_ledger(cfg, &c).await?;
    let first = run_audit(&c, &l, repair).await?;
    for (chunk, why) in &first.repair_failed {
        out!("REPAIR FAILED  chunk {chunk}: {}", super::shown(why));
    }
    // After repairs, what counts is the state they left: check again.
    let s = if repair && !first.repaired.is_empty() {
        for f in &first.findings {
            out!("FOUND    {f}");
        }
        out!(
            "repaired {}; checking again",
            super::plural(first.repaired.len() as u64, "chunk", "chunks")
        );
        let mut again = run_audit(&c, &l, false).await?;
        again.repaired = first.repaired;
        again.repair_failed = first.repair_failed;
        again
    } else {
        first
    };
    for (index, user, by) in &s.rotations {
        out!(
            "KEY ROTATION  ledger entry {index}: user {user}'s keys were replaced, authorised by {by}"
        );
    }
    // Every break-glass access, problem or not (issue 16; protocol.md §17.6).
    let utc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| format!("{ms} ms"))
    };
    for e in &s.emergencies {
        let reason = match &e.reason {
            Some(r) => format!("reason \"{r}\""),
            None => format!("reason hash {}", hex::encode(e.reason_hash)),
        };
        out!(
            "BREAK-GLASS   ledger entry {}: request {}, patient {}, reader {}, at {}, released {}; {}",
            e.index,
            e.request,
            e.patient,
            e.reader,
            utc(e.time_ms),
            utc(e.release_ms),
            super::shown(&reason)
        );
    }
    for f in &s.findings {
        out!("PROBLEM  {}", super::shown(&f.to_string()));
    }
    out!(
        "ledger head verified: {} entries, root {}",
        s.tree_size,
        s.root_hex
    );
    out!(
        "{}, {}, {} checked, {} missing, {} corrupt, {}",
        super::plural(s.reports, "report", "reports"),
        super::plural(s.chunks, "chunk", "chunks"),
        super::plural(s.replicas_checked, "replica", "replicas"),
        s.missing,
        s.corrupt,
        super::plural(s.findings.len() as u64, "problem", "problems")
    );
    if s.staging_swept > 0 {
        out!(
            "{} left by interrupted chunk writes removed from the buckets",
            super::plural(s.staging_swept, "staging file", "staging files")
        );
    }
    if !s.clean() {
        bail!(
            "the audit found {}",
            super::plural(s.findings.len() as u64, "problem", "problems")
        );
    }
    if !s.repair_failed.is_empty() {
        bail!(
            "{} failed",
            super::plural(s.repair_failed.len() as u64, "repair", "repairs")
        );
    }
    Ok(())
}

pub async fn ledger(cfg: &Config) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let l = sync_ledger(cfg, &c).await?;
    out!("ledger key {}", l.key());
    out!(
        "verified head: {} entries, root {}, signed {}",
        l.head().tree_size,
        hex::encode(l.head().root),
        chrono::DateTime::from_timestamp_millis(l.head().time_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    );
    if cfg.client.witnesses.is_empty() {
        out!("witnesses: none configured ([client] witnesses)");
    } else if l.cosigned_by.is_empty() {
        out!(
            "witnesses: no configured witness cosigned this head (quorum {})",
            cfg.client.witness_quorum
        );
    } else {
        out!(
            "cosigned by: {} (quorum {})",
            l.cosigned_by.join(", "),
            cfg.client.witness_quorum
        );
    }
    Ok(())
}

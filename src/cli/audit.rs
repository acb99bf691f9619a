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
    let s = run_audit(&c, &l, repair).await?;
    for f in &s.findings {
        out!("PROBLEM  {f}");
    }
    out!(
        "ledger head verified: {} entries, root {}",
        s.tree_size,
        s.root_hex
    );
    out!(
        "{} reports, {} chunks, {} replicas checked, {} missing, {} corrupt, {} problems",
        s.reports,
        s.chunks,
        s.replicas_checked,
        s.missing,
        s.corrupt,
        s.findings.len()
    );
    if repair && !s.repaired.is_empty() {
        out!(
            "repaired {} chunks; run the audit again to confirm",
            s.repaired.len()
        );
    }
    if !s.clean() {
        bail!("the audit found {} problems", s.findings.len());
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

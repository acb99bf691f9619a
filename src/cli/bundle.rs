//! `export` and `verify-bundle` (issue 16): a report as one file anyone can check offline.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use uuid::Uuid;

use clinvault::bundle::{MAX_BUNDLE_LEN, Trust, Verified};
use clinvault::config::Config;
use clinvault::ledger::LedgerKey;
use clinvault::witness::note::{SIG_COSIGNATURE_V1, VerifierKey};

use super::{ledger, unlock};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The bundle file.
    pub file: PathBuf,
    /// The ledger key that must have signed the bundle's head (`clinvault-ledger:…`, as the
    /// clinic publishes it); else `[client] ledger_key`, else the key pinned for --server.
    #[arg(long)]
    pub ledger_key: Option<String>,
    /// A witness's verifier key (`name+id+base64`, type 0x04); repeat for more. Added to
    /// `[client] witnesses`.
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// Valid cosignatures required from those witnesses (else `[client] witness_quorum`).
    #[arg(long)]
    pub witness_quorum: Option<usize>,
    /// Write the report's plaintext here, only after every check passed (never over a file).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

fn refuse_existing(out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} exists; choose another name or remove it", out.display());
    }
    Ok(())
}

pub async fn export(cfg: &Config, id: Uuid, output: &Path) -> Result<()> {
    refuse_existing(output)?;
    let (c, me) = unlock(cfg).await?;
    let mut l = ledger(cfg, &c).await?;
    let done = clinvault::bundle::export::export(&c, &me, &mut l, id)
        .await
        .with_context(|| format!("report {id}: nothing was written to {}", output.display()))?;
    clinvault::bundle::export::write_new_file(output, &done.bytes)?;
    let v = &done.verified;
    out!(
        "{} written ({}): report {id}, \"{}\", committed at ledger entry {}, head of {} entries",
        output.display(),
        clinvault::units::bytes(done.bytes.len() as u64),
        super::shown(&v.meta.title),
        v.commit_index,
        v.head.tree_size
    );
    out!("the bundle holds the report key in clear: anyone with the file can read the report");
    out!(
        "check it anywhere with: clinvault verify-bundle {} --ledger-key {}",
        output.display(),
        v.ledger_key
    );
    Ok(())
}

/// The ledger key and where it came from: the flag, else the config, else the one pinned
/// for the configured server.
fn trusted_key(cfg: &Config, flag: Option<&str>) -> Result<(LedgerKey, String)> {
    if let Some(k) = flag {
        let k = LedgerKey::parse(k).map_err(|e| anyhow!("--ledger-key: {e}"))?;
        return Ok((k, "given with --ledger-key".into()));
    }
    if !cfg.client.ledger_key.is_empty() {
        let k = LedgerKey::parse(&cfg.client.ledger_key)
            .map_err(|e| anyhow!("[client] ledger_key: {e}"))?;
        return Ok((k, "[client] ledger_key".into()));
    }
    if !cfg.client.server.is_empty() {
        let server = super::client(cfg)?.base_url().to_string();
        if let Some(k) = clinvault::client::ledger::pinned_key(&cfg.client.state_path(), &server)? {
            return Ok((k, format!("the key this client pinned for {server}")));
        }
    }
    bail!(
        "no ledger key to check the bundle against: pass --ledger-key clinvault-ledger:… (the key \
         the clinic publishes), set [client] ledger_key, or use --server with a server this \
         client has synced with before"
    )
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

pub fn verify(cfg: &Config, args: VerifyArgs) -> Result<()> {
    if let Some(out) = &args.output {
        refuse_existing(out)?;
    }
    let (key, key_source) = trusted_key(cfg, args.ledger_key.as_deref())?;
    let mut witnesses = Vec::new();
    for v in cfg.client.witnesses.iter().chain(&args.witnesses) {
        let k = VerifierKey::parse(v).map_err(|e| anyhow!("witness key {v:?}: {e}"))?;
        if k.sig_type != SIG_COSIGNATURE_V1 {
            bail!("witness key {v:?} is not a cosignature key (type 0x04)");
        }
        witnesses.push(k);
    }
    let quorum = args.witness_quorum.unwrap_or(cfg.client.witness_quorum);
    if quorum > witnesses.len() {
        bail!(
            "a witness quorum of {quorum} needs at least that many witness keys (--witness); {} given",
            witnesses.len()
        );
    }
    let len = std::fs::metadata(&args.file)
        .with_context(|| args.file.display().to_string())?
        .len();
    if len > MAX_BUNDLE_LEN {
        bail!(
            "{} is {len} bytes, larger than any bundle ({} MiB at most)",
            args.file.display(),
            MAX_BUNDLE_LEN >> 20
        );
    }
    let data = std::fs::read(&args.file).with_context(|| args.file.display().to_string())?;
    let trust = Trust {
        ledger_key: key,
        witnesses,
        quorum,
    };
    // Decoded, then the file's bytes are let go: the chunks and the plaintext are the peak.
    let decoded =
        clinvault::bundle::Bundle::from_bytes(&data).map_err(clinvault::bundle::BundleError::from);
    drop(data);
    let v = decoded
        .and_then(|b| clinvault::bundle::verify(&b, &trust))
        .with_context(|| {
            format!(
                "{} refused{}",
                args.file.display(),
                args.output
                    .as_ref()
                    .map(|o| format!("; nothing was written to {}", o.display()))
                    .unwrap_or_default()
            )
        })?;
    if let Some(out) = &args.output {
        clinvault::bundle::export::write_new_file(out, &v.plaintext)?;
    }
    print_verified(
        &args.file,
        &v,
        args.output.as_deref(),
        trust.witnesses.len(),
        &key_source,
    );
    Ok(())
}

fn print_verified(
    file: &Path,
    v: &Verified,
    output: Option<&Path>,
    witnesses_given: usize,
    key_source: &str,
) {
    let m = &v.manifest;
    out!("{} verified offline: every check passed", file.display());
    out!(
        "  report     {} \"{}\" ({}, {})",
        Uuid::from_bytes(m.report_id),
        super::shown(&v.meta.title),
        clinvault::units::bytes(m.plaintext_len),
        super::plural(m.n_chunks, "chunk", "chunks")
    );
    match &v.station {
        None => out!(
            "  signed by  author {}, key fingerprint {} (ledger entry {})",
            Uuid::from_bytes(m.author_id),
            v.author_fingerprint,
            v.key_index
        ),
        Some(st) => {
            out!(
                "  signed by  station {}, key fingerprint {} (ledger entry {})",
                st.station_id,
                v.author_fingerprint,
                v.key_index
            );
            out!(
                "  submitted  by station {} for doctor {}, key fingerprint {} (ledger entry {})",
                st.station_id,
                st.doctor_id,
                st.doctor_fingerprint,
                st.doctor_key_index
            );
            out!(
                "  order      {} at ledger entry {}, made {}, in force until {}",
                st.order_id,
                st.order_index,
                fmt_ms(st.order_time_ms),
                fmt_ms(st.expires_ms)
            );
            out!("  names      not proven: the ledger records ids and keys, not names");
        }
    }
    out!("  patient    {}", Uuid::from_bytes(m.patient_id));
    out!(
        "  sealed     {} (the author's clock)",
        fmt_ms(m.created_at_ms)
    );
    out!(
        "  in ledger  entry {}, appended {} (the ledger server's clock)",
        v.commit_index,
        fmt_ms(v.committed_at_ms)
    );
    out!(
        "  head       {} entries, root {}, signed {}",
        v.head.tree_size,
        hex::encode(v.head.root),
        fmt_ms(v.head.time_ms)
    );
    out!("  ledger key {} ({key_source})", v.ledger_key);
    if let Some(o) = &v.origin {
        out!("  checkpoint {o}");
    }
    if witnesses_given == 0 {
        out!("  witnesses  none given (--witness VKEY checks a witness's cosignature)");
    } else if v.cosigned_by.is_empty() {
        out!("  witnesses  none of the {witnesses_given} given cosigned this head");
    } else {
        out!("  witnesses  cosigned by {}", v.cosigned_by.join(", "));
    }
    if !v.unchecked.is_empty() {
        out!(
            "             not checked (no key given): {}",
            v.unchecked.join(", ")
        );
    }
    match output {
        Some(o) => out!("  plaintext  written to {}", o.display()),
        None => out!("  plaintext  not written (pass -o FILE)"),
    }
}

//! The report commands of the binary: upload, download, verify, codes, grants, the access
//! trail and the audit. Thin: the client library does the work and the checks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use uuid::Uuid;

use clinvault::api::Role;
use clinvault::client::audit::audit;
use clinvault::client::ledger::Ledger;
use clinvault::client::reports::{
    Progress, TransferOptions, UploadOptions, approve_and_wrap, check_grant_for_wrap, confirm_wrap,
    download, upload, verify,
};
use clinvault::client::{ApiClient, LoggedIn, session};
use clinvault::config::Config;
use clinvault::ledger::{AccessWhat, Entry, GrantHow, LedgerKey};

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Doctor: ask the patient for access to one of their reports (they get a mailed code).
    Request { report: Uuid },
    /// Grants you asked for, on your reports, or on reports you wrote.
    List,
    /// Patient: approve a request in your client (signs your consent and wraps the key).
    Approve { grant: Uuid },
    /// Author or patient: wrap the report's key for an approved grant, after checking it.
    Confirm {
        grant: Uuid,
        /// Do not ask before wrapping.
        #[arg(long)]
        yes: bool,
    },
    /// Patient or author: end a grant; the server stops serving that reader.
    Revoke { grant: Uuid },
}

fn configured_key(cfg: &Config) -> Result<Option<LedgerKey>> {
    if cfg.client.ledger_key.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        LedgerKey::parse(&cfg.client.ledger_key)
            .map_err(|e| anyhow!("[client] ledger_key: {e}"))?,
    ))
}

pub async fn ledger(cfg: &Config, c: &ApiClient) -> Result<Ledger> {
    let l = Ledger::sync(
        c,
        &cfg.client.state_path(),
        configured_key(cfg)?.as_ref(),
        cfg.client.max_head_age_secs,
    )
    .await?;
    if l.pinned_now {
        eprintln!(
            "note: pinned this server's ledger key on first use: {}\n      compare it with the one the clinic publishes, or set [client] ledger_key",
            l.key()
        );
    }
    Ok(l)
}

/// Logs in again with the password to unseal the keys (the session file holds no keys).
pub async fn unlock(cfg: &Config) -> Result<(ApiClient, LoggedIn)> {
    let (_, saved) = crate::signed_in(cfg)?;
    let mut c = crate::client(cfg)?;
    let pw = crate::password(&format!("Password for {}: ", saved.email), false)?;
    let logged = c.login(&saved.email, &pw).await?;
    session::save(
        &cfg.client.state_path(),
        &session::SavedSession {
            token: logged.login.token.clone(),
            ..saved
        },
    )?;
    Ok((c, logged))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn progress_line(what: &'static str) -> impl Fn(Progress) + Sync {
    let started = std::time::Instant::now();
    move |p: Progress| {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = p.bytes_done as f64 / secs;
        let left = if rate > 0.0 {
            (p.bytes_total.saturating_sub(p.bytes_done)) as f64 / rate
        } else {
            0.0
        };
        eprint!(
            "\r{what} {:.1}/{:.1} MiB  {:.1} MiB/s  {:.0} s left   ",
            mib(p.bytes_done),
            mib(p.bytes_total),
            rate / (1024.0 * 1024.0),
            left
        );
    }
}

async fn resolve_patient(c: &ApiClient, who: &str) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(who) {
        return Ok(id);
    }
    let found = c.patients(who, 1).await?;
    let exact: Vec<_> = found
        .items
        .iter()
        .filter(|p| p.email.eq_ignore_ascii_case(who.trim()))
        .collect();
    match exact.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("no patient {who} among the patients you have bookings with"),
        _ => bail!("more than one patient matches {who}; pass the patient's id"),
    }
}

pub async fn upload_cmd(
    cfg: &Config,
    file: PathBuf,
    patient: String,
    title: String,
    note: String,
) -> Result<()> {
    let (c, me) = unlock(cfg).await?;
    if me.login.user.role != Role::Doctor {
        bail!("only doctors upload reports");
    }
    let patient = resolve_patient(&c, &patient).await?;
    let l = ledger(cfg, &c).await?;
    let title = if title.is_empty() {
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        title
    };
    let show = progress_line("upload");
    let started = std::time::Instant::now();
    let out = upload(
        &c,
        &me,
        &l,
        patient,
        &file,
        &UploadOptions {
            state_dir: &cfg.client.state_path(),
            chunk_size: cfg.client.chunk_size,
            transfers: cfg.client.transfers,
            title,
            note,
            cancel: None,
            progress: Some(&show),
        },
    )
    .await;
    eprintln!();
    let out = out?;
    if out.restarted {
        eprintln!(
            "note: the file changed since an interrupted upload, so it went up as a new report"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    crate::out!(
        "report {} committed (ledger entry {}): {} chunks, {} sent, {} already there, {:.1} s",
        out.report_id,
        out.commit.ledger_index,
        out.chunks_total,
        out.chunks_sent,
        out.chunks_skipped,
        secs
    );
    if let Some(r) = out.commit.release_request_id {
        crate::out!("the patient was mailed a code to release it (request {r})");
    }
    Ok(())
}

pub async fn reports_cmd(cfg: &Config, patient: Option<Uuid>) -> Result<()> {
    let (c, _) = crate::signed_in(cfg)?;
    let list = c.reports(patient).await?;
    for r in &list.reports {
        crate::out!(
            "{}  {}  by {:<24} for {:<24} {:>9.2} MiB  {}{}",
            r.id,
            r.created_at.format("%Y-%m-%d"),
            r.author_name,
            r.patient_name,
            mib(r.plaintext_len),
            r.status,
            if r.readable {
                ""
            } else {
                " (not readable by you)"
            }
        );
    }
    crate::out!("{} reports", list.reports.len());
    Ok(())
}

pub async fn otp_cmd(cfg: &Config, code: String, request: Option<Uuid>) -> Result<()> {
    let (c, _) = crate::signed_in(cfg)?;
    let request = match request {
        Some(r) => r,
        None => {
            let pending = c.otp_pending().await?;
            match pending.as_slice() {
                [one] => one.request_id,
                [] => bail!(
                    "no code is waiting for you; check the request id in the mail and pass --request"
                ),
                many => bail!(
                    "{} codes are waiting; pass --request with the id from the mail:\n{}",
                    many.len(),
                    many.iter()
                        .map(|p| format!("  {}  {}", p.request_id, p.unlocks))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    };
    let r = c.otp_verify(request, &code).await?;
    match r.purpose.as_str() {
        "release" => crate::out!(
            "report {} is released to you: `clinvault download {} -o FILE`",
            r.report_id,
            r.report_id
        ),
        _ => crate::out!(
            "access approved (grant {}); the author or the patient now confirms the key in their client",
            r.grant_id.map(|g| g.to_string()).unwrap_or_default()
        ),
    }
    Ok(())
}

pub async fn download_cmd(cfg: &Config, id: Uuid, output: &Path) -> Result<()> {
    if output.exists() {
        bail!(
            "{} exists; choose another name or remove it",
            output.display()
        );
    }
    let (c, me) = unlock(cfg).await?;
    let l = ledger(cfg, &c).await?;
    let show = progress_line("download");
    let r = download(
        &c,
        &me,
        &l,
        id,
        output,
        &TransferOptions {
            transfers: cfg.client.transfers,
            cancel: None,
            progress: Some(&show),
        },
    )
    .await;
    eprintln!();
    let r =
        r.with_context(|| format!("report {id}: nothing was written to {}", output.display()))?;
    crate::out!(
        "{} ({:.2} MiB, \"{}\") verified: signature, ledger, key commitment, {} chunks and chain",
        output.display(),
        mib(r.manifest.plaintext_len),
        r.meta.title,
        r.manifest.n_chunks
    );
    Ok(())
}

pub async fn verify_cmd(cfg: &Config, id: Option<Uuid>) -> Result<()> {
    let (c, me) = unlock(cfg).await?;
    let l = ledger(cfg, &c).await?;
    let ids = match id {
        Some(id) => vec![id],
        None => c
            .reports(None)
            .await?
            .reports
            .into_iter()
            .filter(|r| r.readable)
            .map(|r| r.id)
            .collect(),
    };
    let mut failed = 0;
    for id in &ids {
        match verify(&c, &me, &l, *id, cfg.client.transfers).await {
            Ok(r) => crate::out!(
                "OK    {id}  \"{}\"  {} chunks",
                r.meta.title,
                r.manifest.n_chunks
            ),
            Err(e) => {
                failed += 1;
                crate::out!("FAIL  {id}  {e}");
            }
        }
    }
    crate::out!(
        "ledger head: {} entries, root {}",
        l.head().tree_size,
        hex::encode(l.head().root)
    );
    if failed > 0 {
        bail!("{failed} of {} reports failed verification", ids.len());
    }
    crate::out!("{} reports verified", ids.len());
    Ok(())
}

pub async fn grant_cmd(cfg: &Config, cmd: GrantCommand) -> Result<()> {
    match cmd {
        GrantCommand::Request { report } => {
            let (c, _) = crate::signed_in(cfg)?;
            let g = c.grant_request(report).await?;
            crate::out!(
                "asked for access (grant {}); the patient was mailed a code. When they tell it to you: `clinvault otp CODE --request {}`",
                g.id,
                g.request_id.map(|r| r.to_string()).unwrap_or_default()
            );
        }
        GrantCommand::List => {
            let (c, _) = crate::signed_in(cfg)?;
            for g in c.grants().await? {
                crate::out!(
                    "{}  report {}  reader {:<24} {:<9} until {}{}",
                    g.id,
                    g.report_id,
                    g.reader_name,
                    g.status,
                    g.expires_at.format("%Y-%m-%d"),
                    g.request_id
                        .map(|r| format!("  code request {r}"))
                        .unwrap_or_default()
                );
            }
        }
        GrantCommand::Approve { grant } => {
            let (c, me) = unlock(cfg).await?;
            let mut l = ledger(cfg, &c).await?;
            let g = approve_and_wrap(&c, &me, &mut l, grant).await?;
            crate::out!(
                "approved and key wrapped for {} (grant {})",
                g.reader_name,
                g.id
            );
        }
        GrantCommand::Confirm { grant, yes } => {
            let (c, me) = unlock(cfg).await?;
            let l = ledger(cfg, &c).await?;
            let check = check_grant_for_wrap(&c, &l, grant).await?;
            crate::out!(
                "grant {}\n  reader:      Dr {} (key fingerprint {})\n  report:      {}\n  approved:    {} by {}\n  expires:     {}",
                check.grant.id,
                check.reader_name,
                check.reader_fingerprint,
                check.grant.report_id,
                check
                    .grant
                    .approved_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                match check.how {
                    GrantHow::Otp => "the patient's mailed code",
                    GrantHow::SignedByPatient => "the patient's signature",
                },
                check.grant.expires_at.to_rfc3339()
            );
            if !yes {
                let answer = crate::read_line("Wrap the report's key for this doctor? [y/N] ")?;
                if !answer.eq_ignore_ascii_case("y") && !answer.eq_ignore_ascii_case("yes") {
                    bail!("not confirmed; nothing was wrapped");
                }
            }
            let g = confirm_wrap(&c, &me, &l, &check).await?;
            crate::out!(
                "key wrapped for {} (grant {} is {})",
                g.reader_name,
                g.id,
                g.status
            );
        }
        GrantCommand::Revoke { grant } => {
            let (c, _) = crate::signed_in(cfg)?;
            let g = c.grant_revoke(grant).await?;
            crate::out!(
                "grant {} revoked: the server no longer serves {} this report. A copy already downloaded cannot be recalled.",
                g.id,
                g.reader_name
            );
        }
    }
    Ok(())
}

/// The patient's trail: every entry about them, checked for inclusion.
pub async fn access_cmd(cfg: &Config) -> Result<()> {
    let (c, _) = crate::signed_in(cfg)?;
    let l = ledger(cfg, &c).await?;
    let entries = l.entries(0, l.head().tree_size).await?;
    for (i, e) in &entries {
        let when = chrono::DateTime::from_timestamp_millis(e.time_ms())
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let what = match e {
            Entry::UserRegistered { .. } => "account registered with its public keys".to_string(),
            Entry::ReportCommitted { report_id, .. } => {
                format!("report {} committed", Uuid::from_bytes(*report_id))
            }
            Entry::GrantApproved {
                report_id,
                reader_id,
                how,
                ..
            } => format!(
                "access to report {} approved for user {} ({})",
                Uuid::from_bytes(*report_id),
                Uuid::from_bytes(*reader_id),
                match how {
                    GrantHow::Otp => "mailed code",
                    GrantHow::SignedByPatient => "your signature",
                }
            ),
            Entry::KeyWrapped {
                report_id,
                reader_id,
                ..
            } => format!(
                "key of report {} wrapped for user {}",
                Uuid::from_bytes(*report_id),
                Uuid::from_bytes(*reader_id)
            ),
            Entry::GrantRevoked { grant_id, .. } => {
                format!("grant {} revoked", Uuid::from_bytes(*grant_id))
            }
            Entry::ReportAccess {
                report_id,
                reader_id,
                what,
                ..
            } => format!(
                "report {} {} user {}",
                Uuid::from_bytes(*report_id),
                match what {
                    AccessWhat::ReleasedByOtp => "released by code to",
                    AccessWhat::KeyServed => "key served to",
                },
                Uuid::from_bytes(*reader_id)
            ),
            Entry::OtpVerified { request_id, .. } => {
                format!("code checked for request {}", Uuid::from_bytes(*request_id))
            }
        };
        crate::out!("#{i:<6} {when}  {what}");
    }
    crate::out!(
        "{} entries, each checked against the ledger head of {} entries",
        entries.len(),
        l.head().tree_size
    );
    Ok(())
}

pub async fn audit_cmd(cfg: &Config, repair: bool) -> Result<()> {
    let (c, saved) = crate::signed_in(cfg)?;
    if saved.role != Role::Auditor {
        bail!("the audit runs as an auditor account");
    }
    let l = ledger(cfg, &c).await?;
    let s = audit(&c, &l, repair).await?;
    for f in &s.findings {
        crate::out!("PROBLEM  {f}");
    }
    crate::out!(
        "ledger head verified: {} entries, root {}",
        s.tree_size,
        s.root_hex
    );
    crate::out!(
        "{} reports, {} chunks, {} replicas checked, {} missing, {} corrupt, {} problems",
        s.reports,
        s.chunks,
        s.replicas_checked,
        s.missing,
        s.corrupt,
        s.findings.len()
    );
    if repair && !s.repaired.is_empty() {
        crate::out!(
            "repaired {} chunks; run the audit again to confirm",
            s.repaired.len()
        );
    }
    if !s.clean() {
        bail!("the audit found {} problems", s.findings.len());
    }
    Ok(())
}

pub async fn ledger_cmd(cfg: &Config) -> Result<()> {
    let (c, _) = crate::signed_in(cfg)?;
    let l = ledger(cfg, &c).await?;
    crate::out!("ledger key {}", l.key());
    crate::out!(
        "verified head: {} entries, root {}, signed {}",
        l.head().tree_size,
        hex::encode(l.head().root),
        chrono::DateTime::from_timestamp_millis(l.head().time_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    );
    Ok(())
}

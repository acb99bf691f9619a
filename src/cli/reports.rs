//! Reports: upload, list, codes, download, verify and the patient's access trail.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use uuid::Uuid;

use clinvault::api::Role;
use clinvault::client::ApiClient;
use clinvault::client::reports::{
    self as client_reports, Progress, TransferOptions, UploadOptions,
};
use clinvault::config::Config;
use clinvault::ledger::{AccessWhat, Entry, GrantHow};

use super::{ledger, mib, signed_in, unlock};

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

pub(super) async fn resolve_patient(c: &ApiClient, who: &str) -> Result<Uuid> {
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

pub async fn upload(
    cfg: &Config,
    file: PathBuf,
    patient: String,
    title: String,
    note: String,
) -> Result<()> {
    // The file first: no password prompt, login or ledger sync for a typo.
    let meta = std::fs::metadata(&file).with_context(|| format!("{}", file.display()))?;
    if meta.is_dir() {
        bail!("{} is a folder; upload a file", file.display());
    }
    if !meta.is_file() {
        bail!("{} is not a regular file", file.display());
    }
    std::fs::File::open(&file).with_context(|| format!("{} cannot be read", file.display()))?;
    let (c, me) = unlock(cfg).await?;
    if me.login.user.role == Role::Station {
        return super::watch::upload(cfg, &c, &me, &file, &patient, title, note).await;
    }
    if me.login.user.role != Role::Doctor {
        bail!("only doctors and stations upload reports");
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
    let out = client_reports::upload(
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
    out!(
        "report {} committed (ledger entry {}): {}, {} sent, {} already there, {:.1} s",
        out.report_id,
        out.commit.ledger_index,
        super::plural(out.chunks_total, "chunk", "chunks"),
        out.chunks_sent,
        out.chunks_skipped,
        secs
    );
    if let Some(r) = out.commit.release_request_id {
        out!("the patient was mailed a code to release it (request {r})");
    }
    Ok(())
}

pub async fn list(cfg: &Config, patient: Option<Uuid>) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let list = c.reports(patient).await?;
    for r in &list.reports {
        if r.status.is_empty() {
            // Reception: that it exists, by whom and when; nothing more is sent.
            out!(
                "{}  {}  by {:<24} for {}",
                r.id,
                r.created_at.format("%Y-%m-%d"),
                super::shown(&r.author_name),
                super::shown(&r.patient_name)
            );
            continue;
        }
        out!(
            "{}  {}  by {:<24} for {:<24} {:>9}  {}{}",
            r.id,
            r.created_at.format("%Y-%m-%d"),
            super::shown(&r.author_name),
            super::shown(&r.patient_name),
            clinvault::units::bytes(r.plaintext_len),
            r.status,
            if r.readable {
                ""
            } else {
                " (not readable by you)"
            }
        );
    }
    out!(
        "{}",
        super::plural(list.reports.len() as u64, "report", "reports")
    );
    Ok(())
}

pub async fn otp(cfg: &Config, code: String, request: Option<Uuid>) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
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
                        .map(|p| format!("  {}  {}", p.request_id, super::shown(&p.unlocks)))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    };
    let r = c.otp_verify(request, &code).await?;
    match r.purpose.as_str() {
        "release" => out!(
            "report {} is released to you: `clinvault download {} -o FILE`",
            r.report_id,
            r.report_id
        ),
        _ => out!(
            "access approved (grant {}); the author or the patient now confirms the key in their client",
            r.grant_id.map(|g| g.to_string()).unwrap_or_default()
        ),
    }
    Ok(())
}

pub async fn otp_resend(cfg: &Config, request: Uuid) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let p = c.otp_resend(request).await?;
    out!(
        "a new code was mailed for {} (expires {})",
        super::shown(&p.unlocks),
        p.expires_at.to_rfc3339()
    );
    Ok(())
}

pub async fn download(cfg: &Config, id: Uuid, output: &Path) -> Result<()> {
    if output.exists() {
        bail!(
            "{} exists; choose another name or remove it",
            output.display()
        );
    }
    let (c, me) = unlock(cfg).await?;
    let l = ledger(cfg, &c).await?;
    let show = progress_line("download");
    let opts = TransferOptions {
        transfers: cfg.client.transfers,
        cancel: None,
        progress: Some(&show),
    };
    let r = tokio::select! {
        r = client_reports::download(&c, &me, &l, id, output, &opts) => r,
        // The download is dropped here, and with it its temporary file.
        _ = interrupted() => {
            clinvault::client::output::remove_all_pending();
            eprintln!();
            bail!("interrupted: nothing was written to {}", output.display());
        }
    };
    eprintln!();
    let r =
        r.with_context(|| format!("report {id}: nothing was written to {}", output.display()))?;
    out!(
        "{} ({}, \"{}\") verified: signature, ledger, key commitment, {} and chain",
        output.display(),
        clinvault::units::bytes(r.manifest.plaintext_len),
        super::shown(&r.meta.title),
        super::plural(r.manifest.n_chunks, "chunk", "chunks")
    );
    if let Some(o) = &r.origin {
        out!("{o} (ledger entry {})", o.order_index);
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub async fn verify(cfg: &Config, id: Option<Uuid>) -> Result<()> {
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
        match client_reports::verify(&c, &me, &l, *id, cfg.client.transfers).await {
            Ok(r) => out!(
                "OK    {id}  \"{}\"  {}{}",
                super::shown(&r.meta.title),
                super::plural(r.manifest.n_chunks, "chunk", "chunks"),
                r.origin.map(|o| format!("  {o}")).unwrap_or_default()
            ),
            Err(e) => {
                failed += 1;
                out!("FAIL  {id}  {}", super::shown(&e.to_string()));
            }
        }
    }
    out!(
        "ledger head: {}, root {}",
        super::plural(l.head().tree_size, "entry", "entries"),
        hex::encode(l.head().root)
    );
    if failed > 0 {
        bail!(
            "{failed} of {} failed verification",
            super::plural(ids.len() as u64, "report", "reports")
        );
    }
    out!(
        "{} verified",
        super::plural(ids.len() as u64, "report", "reports")
    );
    Ok(())
}

/// The patient's trail: every entry about them, checked for inclusion.
pub async fn access(cfg: &Config) -> Result<()> {
    let (c, saved) = signed_in(cfg)?;
    let l = ledger(cfg, &c).await?;
    // Replayed from the ledger itself (issue 17): complete even if the server's index of
    // "entries about you" was thinned out.
    let trail =
        clinvault::client::trail::complete_trail(&l, &cfg.client.state_path(), saved.user_id)
            .await?;
    let entries = trail.entries;
    // Names beside the ids: the id is what the ledger proves, the name is the server's word
    // for whose key that id registered.
    let mut names: std::collections::HashMap<[u8; 16], String> = Default::default();
    for (_, e) in &entries {
        let ids = match e {
            Entry::GrantApproved { reader_id, .. }
            | Entry::KeyWrapped { reader_id, .. }
            | Entry::ReportAccess { reader_id, .. } => vec![*reader_id],
            Entry::StationOrder {
                station_id,
                doctor_id,
                ..
            } => vec![*station_id, *doctor_id],
            Entry::EmergencyAccess { reader_id, .. } => vec![*reader_id],
            _ => vec![],
        };
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(v) = names.entry(id) {
                let name = l
                    .user_keys(Uuid::from_bytes(id), None)
                    .await
                    .map(|k| k.name)
                    .unwrap_or_default();
                v.insert(name);
            }
        }
    }
    // Issue 16: the reasons of break-glass requests, each checked against its entry's hash.
    let reasons = super::emergency::reasons(&c).await;
    let who = |id: &[u8; 16]| {
        let uuid = Uuid::from_bytes(*id);
        match names.get(id).filter(|n| !n.is_empty()) {
            Some(n) => format!("{} ({uuid})", super::shown(n)),
            None => format!("user {uuid}"),
        }
    };
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
                "access to report {} approved for {} ({})",
                Uuid::from_bytes(*report_id),
                who(reader_id),
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
                "key of report {} wrapped for {}",
                Uuid::from_bytes(*report_id),
                who(reader_id)
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
                "report {} {} {}",
                Uuid::from_bytes(*report_id),
                match what {
                    AccessWhat::ReleasedByOtp => "released by code to",
                    AccessWhat::KeyServed => "key served to",
                },
                who(reader_id)
            ),
            Entry::OtpVerified { request_id, .. } => {
                format!("code checked for request {}", Uuid::from_bytes(*request_id))
            }
            Entry::AccountStatus {
                user_id,
                state,
                admin_id,
                ..
            } => format!(
                "account {} {} by {}",
                who(user_id),
                match state {
                    clinvault::ledger::AccountState::Deactivated => "deactivated",
                    clinvault::ledger::AccountState::Reactivated => "reactivated",
                },
                who(admin_id)
            ),
            Entry::StationOrder {
                station_id,
                doctor_id,
                expires_ms,
                ..
            } => format!(
                "{} ordered an upload by station {} for you, until {}",
                who(doctor_id),
                who(station_id),
                chrono::DateTime::from_timestamp_millis(*expires_ms)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default()
            ),
            Entry::EmergencyAccess { .. } => super::emergency::trail_line(e, &reasons, &who),
            Entry::EmergencyTeam { .. } => {
                clinvault::client::trail::shared_words(e, &who).unwrap_or_default()
            }
            Entry::KeyRotated { .. } => {
                clinvault::client::trail::shared_words(e, &who).unwrap_or_default()
            }
        };
        out!("#{i:<6} {when}  {what}");
    }
    out!(
        "{}, complete: the ledger replayed up to its signed head of {}",
        super::plural(entries.len() as u64, "entry", "entries"),
        super::plural(l.head().tree_size, "entry", "entries")
    );
    if !trail.omitted_by_server.is_empty() {
        bail!(
            "the server's list of entries about you left out {}: its records were edited, or \
             it hides them — tell your clinic",
            trail
                .omitted_by_server
                .iter()
                .map(|i| format!("#{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

//! `clinvault emergency …` and `clinvault admin emergency-team / emergencies` (issue 16):
//! break-glass emergency access, docs/protocol.md §17.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use uuid::Uuid;

use clinvault::api::emergency::EmergencyRequest;
use clinvault::client::ApiClient;
use clinvault::client::emergency as em;
use clinvault::config::Config;
use clinvault::ledger::Entry;

use super::{ledger, signed_in, unlock};

#[derive(Subcommand)]
pub enum EmergencyCommand {
    /// Emergency-team doctor: break the glass on a patient (mailed to them and the
    /// administrators, recorded in the ledger); the reports are saved to --out once released.
    Open {
        /// The patient's id (or email, among your own patients).
        patient: String,
        /// Why: mandatory, mailed to the patient and the administrators.
        #[arg(long)]
        reason: String,
        /// Folder the released reports are written to (default: the current folder).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Emergency-team doctor: save the reports of a request of yours released after its wait.
    Fetch {
        request: Uuid,
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Patient: stop a break-glass request on you during its wait.
    Veto { request: Uuid },
    /// Break-glass requests: on you (patients) or yours (doctors).
    List,
}

/// `clinvault admin emergency-team …`
#[derive(Subcommand)]
pub enum TeamCommand {
    /// Put a doctor on the emergency team (recorded in the ledger).
    Add { user: Uuid },
    /// Take a member off the team; their escrowed keys are deleted.
    Remove { user: Uuid },
    /// The members, each checked against their ledger entry.
    List,
}

pub async fn run(cfg: &Config, cmd: EmergencyCommand) -> Result<()> {
    match cmd {
        EmergencyCommand::Open {
            patient,
            reason,
            out,
        } => open(cfg, &patient, &reason, out).await,
        EmergencyCommand::Fetch { request, out } => fetch(cfg, request, out).await,
        EmergencyCommand::Veto { request } => {
            let (c, _) = signed_in(cfg)?;
            let r = c.emergency_veto(request).await?;
            out!(
                "vetoed: Dr {}'s request {} is stopped; nothing was released",
                super::shown(&r.reader_name),
                r.id
            );
            Ok(())
        }
        EmergencyCommand::List => {
            let (c, _) = signed_in(cfg)?;
            print_requests(&c.emergencies().await?.requests);
            Ok(())
        }
    }
}

pub async fn team(cfg: &Config, cmd: TeamCommand) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    match cmd {
        TeamCommand::Add { user } => {
            let r = c.emergency_team_change(user, true).await?;
            out!(
                "{user} is on the emergency team (ledger entry #{}); reports committed from now \
                 on are escrowed for them",
                r.ledger_index
            );
        }
        TeamCommand::Remove { user } => {
            let r = c.emergency_team_change(user, false).await?;
            out!(
                "{user} is off the emergency team (ledger entry #{}); their escrowed keys are deleted",
                r.ledger_index
            );
        }
        TeamCommand::List => {
            let l = ledger(cfg, &c).await?;
            let verified: Vec<Uuid> = em::verified_team(&c, &l)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let team = c.emergency_team().await?;
            for m in &team.members {
                out!(
                    "{}  {:<28} {:<32} {}",
                    m.user_id,
                    super::shown(&m.name),
                    m.email,
                    match (verified.contains(&m.user_id), m.ledger_index) {
                        (true, Some(i)) => format!("ledger #{i} ✓"),
                        _ => "NOT IN THE LEDGER: clients wrap no key to them".into(),
                    }
                );
            }
            out!(
                "{}",
                super::plural(team.members.len() as u64, "member", "members")
            );
        }
    }
    Ok(())
}

/// `clinvault admin emergencies`: every break-glass request, for review.
pub async fn review(cfg: &Config) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    print_requests(&c.emergencies().await?.requests);
    Ok(())
}

fn print_requests(reqs: &[EmergencyRequest]) {
    for r in reqs {
        out!(
            "{}  {}  {:<8}  Dr {} → {} ({})  {}  ledger #{}\n    reason: {}",
            r.id,
            r.created_at.format("%Y-%m-%d %H:%M"),
            r.status,
            super::shown(&r.reader_name),
            super::shown(&r.patient_name),
            r.patient_id,
            super::plural(r.report_ids.len() as u64, "report", "reports"),
            r.ledger_index,
            super::shown(&r.reason)
        );
    }
    out!(
        "{}",
        super::plural(
            reqs.len() as u64,
            "break-glass request",
            "break-glass requests"
        )
    );
}

async fn open(cfg: &Config, patient: &str, reason: &str, out: Option<PathBuf>) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let patient = super::reports::resolve_patient(&c, patient).await?;
    let r = c.emergency_open(patient, reason).await?;
    out!(
        "break-glass request {} on {}: {} — recorded in the ledger (#{}), mailed to the patient \
         and the administrators",
        r.id,
        super::shown(&r.patient_name),
        super::plural(r.report_ids.len() as u64, "report", "reports"),
        r.ledger_index
    );
    if r.status == "waiting" {
        out!(
            "released at {} unless the patient vetoes; then run `clinvault emergency fetch {}`",
            r.release_at.to_rfc3339(),
            r.id
        );
        return Ok(());
    }
    fetch(cfg, r.id, out).await
}

async fn fetch(cfg: &Config, request: Uuid, out: Option<PathBuf>) -> Result<()> {
    let dir = out.unwrap_or_else(|| PathBuf::from("."));
    let (c, me) = unlock(cfg).await?;
    let mut l = ledger(cfg, &c).await?;
    let rel = em::released(&c, &me, &mut l, request).await?;
    for (report, _) in &rel.keys {
        let got = em::read_report(&c, &me, &l, &rel, *report, u64::MAX)
            .await
            .with_context(|| format!("report {report}"))?;
        let Some(bytes) = got.bytes.as_ref() else {
            bail!("report {report}: not kept in memory");
        };
        let path = free_name(&dir, *report, &got.report.meta.file_name);
        std::fs::write(&path, bytes.as_slice())
            .with_context(|| format!("writing {}", path.display()))?;
        out!(
            "{} (\"{}\") verified: signature, ledger (commit and break-glass entry), key \
             commitment, every chunk",
            path.display(),
            super::shown(&got.report.meta.title)
        );
    }
    Ok(())
}

/// `<report id>-<file name>` in `dir`: never over an existing file, never outside `dir`.
fn free_name(dir: &Path, report: Uuid, file_name: &str) -> PathBuf {
    let safe: String = file_name
        .chars()
        .map(|ch| {
            if ch.is_alphanumeric() || matches!(ch, '.' | '-' | '_') {
                ch
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    let mut path = dir.join(format!("{report}-{safe}"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{report}-{n}-{safe}"));
        n += 1;
    }
    path
}

/// The reasons of the requests the server lets the caller see, checked in [`trail_line`].
pub async fn reasons(c: &ApiClient) -> HashMap<[u8; 16], String> {
    em::reasons(c).await
}

/// The access trail's line for kind 12 (`clinvault access`).
pub fn trail_line(
    e: &Entry,
    reasons: &HashMap<[u8; 16], String>,
    who: &dyn Fn(&[u8; 16]) -> String,
) -> String {
    match e {
        Entry::EmergencyAccess {
            patient_id,
            reader_id,
            release_ms,
            ..
        } => {
            let reason = em::trail_reason(e, reasons).unwrap_or_default();
            let released = chrono::DateTime::from_timestamp_millis(*release_ms)
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default();
            format!(
                "BREAK-GLASS EMERGENCY ACCESS by {} to the reports of {}, released {released}; \
                 reason: {reason}",
                who(reader_id),
                who(patient_id)
            )
        }
        _ => String::new(),
    }
}

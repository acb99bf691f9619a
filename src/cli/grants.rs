//! `clinvault grant …`: another doctor's access to one report.

use anyhow::{Result, bail};
use clap::Subcommand;
use uuid::Uuid;

use clinvault::client::reports::{approve_and_wrap, check_grant_for_wrap, confirm_wrap};
use clinvault::config::Config;
use clinvault::ledger::GrantHow;

use super::{ledger, read_line, signed_in, unlock};

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

pub async fn run(cfg: &Config, cmd: GrantCommand) -> Result<()> {
    match cmd {
        GrantCommand::Request { report } => {
            let (c, _) = signed_in(cfg)?;
            let g = c.grant_request(report).await?;
            out!(
                "asked for access (grant {}); the patient was mailed a code. When they tell it to you: `clinvault otp CODE --request {}`",
                g.id,
                g.request_id.map(|r| r.to_string()).unwrap_or_default()
            );
        }
        GrantCommand::List => {
            let (c, _) = signed_in(cfg)?;
            for g in c.grants().await? {
                // A grant to the report's own patient or author is a re-wrap request after
                // their key rotation (issue 15.3): open until confirmed, so no date.
                if g.reader_id == g.patient_id || g.reader_id == g.author_id {
                    out!(
                        "{}  report {}  reader {:<24} {:<9} re-wrap after their key rotation{}",
                        g.id,
                        g.report_id,
                        super::shown(&g.reader_name),
                        g.status,
                        if g.status == "approved" {
                            ": compare fingerprints, then `clinvault grant confirm` it"
                        } else {
                            ""
                        }
                    );
                    continue;
                }
                out!(
                    "{}  report {}  reader {:<24} {:<9} until {}{}",
                    g.id,
                    g.report_id,
                    super::shown(&g.reader_name),
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
            out!(
                "approved and key wrapped for {} (grant {})",
                super::shown(&g.reader_name),
                g.id
            );
        }
        GrantCommand::Confirm { grant, yes } => {
            let (c, me) = unlock(cfg).await?;
            let l = ledger(cfg, &c).await?;
            let check = check_grant_for_wrap(&c, &l, grant).await?;
            out!(
                "grant {}\n  reader:      {}{} (key fingerprint {})\n  report:      {}\n  approved:    {} by {}\n  expires:     {}",
                check.grant.id,
                if check.rotation.is_some() { "" } else { "Dr " },
                super::shown(&check.reader_name),
                check.reader_fingerprint,
                check.grant.report_id,
                check
                    .grant
                    .approved_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                match check.how {
                    Some(GrantHow::Otp) => "the patient's mailed code".to_string(),
                    Some(GrantHow::SignedByPatient) => "the patient's signature".to_string(),
                    None => format!(
                        "a re-wrap of their own report after their key rotation (ledger entry \
                         {}): you accepted the new fingerprint above",
                        check.rotation.unwrap_or_default()
                    ),
                },
                check.grant.expires_at.to_rfc3339()
            );
            if !yes {
                let answer = read_line("Wrap the report's key for this doctor? [y/N] ")?;
                if !answer.eq_ignore_ascii_case("y") && !answer.eq_ignore_ascii_case("yes") {
                    bail!("not confirmed; nothing was wrapped");
                }
            }
            let g = confirm_wrap(&c, &me, &l, &check).await?;
            out!(
                "key wrapped for {} (grant {} is {})",
                super::shown(&g.reader_name),
                g.id,
                g.status
            );
        }
        GrantCommand::Revoke { grant } => {
            let (c, _) = signed_in(cfg)?;
            let g = c.grant_revoke(grant).await?;
            out!(
                "grant {} revoked: the server no longer serves {} this report. A copy already downloaded cannot be recalled.",
                g.id,
                super::shown(&g.reader_name)
            );
        }
    }
    Ok(())
}

//! `clinvault admin …`: accounts through the server; backup and restore on the server machine.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use uuid::Uuid;

use clinvault::api::{InviteRequest, Role};
use clinvault::config::Config;
use clinvault::server::backup;

use super::signed_in;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Invite a doctor, reception, auditor or station account; the code goes out by mail.
    Invite {
        #[arg(long)]
        role: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        specialty: String,
        #[arg(long, default_value = "")]
        bio: String,
    },
    /// List accounts.
    Users {
        #[arg(default_value = "")]
        q: String,
        #[arg(long, default_value_t = 1)]
        page: u32,
    },
    /// Deactivate an account (its sessions end at once).
    Deactivate { user: Uuid },
    /// Let a deactivated account log in again with its existing keys (recorded in the ledger).
    Reactivate { user: Uuid },
    /// The break-glass emergency team (issue 16): add, remove, list.
    #[command(subcommand)]
    EmergencyTeam(super::emergency::TeamCommand),
    /// Review every break-glass emergency access (issue 16).
    Emergencies,
    /// Operator, on the server machine: a consistent copy of the metadata database (SQLite:
    /// `VACUUM INTO`, safe while servers run; PostgreSQL: `pg_dump --format=custom`).
    Backup {
        #[arg(long)]
        out: PathBuf,
        /// The server's data folder, as for `serve` (default: [server] data).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Operator, on the server machine: take a lost bucket (emptied, or replaced by a new disk
    /// or S3 bucket) back into use with a new identity marker; then `clinvault audit --repair`
    /// copies its replicas back.
    AdoptBucket {
        /// The bucket's name in `[[server.buckets]]` (`a` or `b` for the default folders).
        name: String,
        /// Data folder, as for `serve`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Operator, servers stopped: restore a SQLite backup, refused when its ledger is older
    /// than (or differs from) the newest signed head you supply. PostgreSQL: `pg_restore` into a
    /// fresh database first, then run this without --from to check that database.
    Restore {
        #[arg(long)]
        from: Option<PathBuf>,
        /// SIZE:ROOTHEX as `clinvault audit` / `clinvault ledger` print it, a signed head in
        /// hex, or a client's saved head (`STATE/ledger/*.json`).
        #[arg(long)]
        newest_head: String,
        /// The server's data folder, as for `serve` (default: [server] data).
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// The configuration with `--data` in place of `[server] data`.
fn with_data(cfg: &Config, data: Option<PathBuf>) -> Config {
    let mut c = cfg.clone();
    if let Some(d) = data {
        c.server.data = d;
    }
    c
}

pub async fn run(cfg: &Config, cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::Backup { out, data } => backup_db(&with_data(cfg, data), &out).await,
        AdminCommand::AdoptBucket { name, data } => {
            adopt_bucket(&with_data(cfg, data), &name).await
        }
        AdminCommand::Restore {
            from,
            newest_head,
            data,
        } => restore(&with_data(cfg, data), from, &newest_head).await,
        AdminCommand::Invite {
            role,
            email,
            name,
            specialty,
            bio,
        } => {
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow!("--role: doctor, reception, auditor or station"))?;
            invite(
                cfg,
                InviteRequest {
                    role,
                    email,
                    name,
                    specialty,
                    bio,
                },
            )
            .await
        }
        AdminCommand::Users { q, page } => users(cfg, &q, page).await,
        AdminCommand::EmergencyTeam(cmd) => super::emergency::team(cfg, cmd).await,
        AdminCommand::Emergencies => super::emergency::review(cfg).await,
        AdminCommand::Deactivate { user } => {
            let (c, _) = signed_in(cfg)?;
            c.deactivate(user).await?;
            out!("deactivated {user}");
            Ok(())
        }
        AdminCommand::Reactivate { user } => {
            let (c, _) = signed_in(cfg)?;
            let r = c.reactivate(user).await?;
            out!(
                "reactivated {user} (ledger entry #{}); its keys are unchanged",
                r.ledger_index
            );
            Ok(())
        }
    }
}

async fn backup_db(cfg: &Config, out: &std::path::Path) -> Result<()> {
    match backup::backup(&cfg.server, out).await? {
        Some(l) => out!(
            "backup written to {}: ledger {}, root {}",
            out.display(),
            super::plural(l.size, "entry", "entries"),
            hex::encode(l.root)
        ),
        None => out!("pg_dump wrote {}", out.display()),
    }
    Ok(())
}

async fn adopt_bucket(cfg: &Config, name: &str) -> Result<()> {
    let store = clinvault::server::chunk_store::ChunkStore::open_existing(
        &clinvault::server::bucket_configs(&cfg.server, &cfg.server.data),
        cfg.server.replicas,
    )?;
    store.adopt(name).await?;
    out!(
        "bucket {name} adopted: servers write to it again. Run `clinvault audit --repair` as an \
         auditor to copy its missing replicas back."
    );
    Ok(())
}

async fn restore(cfg: &Config, from: Option<PathBuf>, newest_head: &str) -> Result<()> {
    let head = backup::Head::parse(newest_head, None)?;
    let l = backup::restore(&cfg.server, from.as_deref(), &head).await?;
    out!(
        "{}: ledger {}, root {} (reaches the head of {})",
        if from.is_some() {
            "restored"
        } else {
            "the database passes"
        },
        super::plural(l.size, "entry", "entries"),
        hex::encode(l.root),
        super::plural(head.size, "entry", "entries")
    );
    Ok(())
}

async fn invite(cfg: &Config, request: InviteRequest) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let r = c.invite(&request).await?;
    out!(
        "invite {} mailed to {}; valid until {}",
        r.invite_id,
        request.email,
        r.expires_at.to_rfc3339()
    );
    Ok(())
}

async fn users(cfg: &Config, q: &str, page: u32) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let p = c.users(q, page).await?;
    for u in &p.items {
        out!(
            "{}  {:<10} {:<28} {:<32} {}",
            u.id,
            u.role.as_str(),
            super::shown(&u.name),
            u.email,
            if u.active { "active" } else { "deactivated" }
        );
    }
    out!("page {} ({} of {} shown)", p.page, p.items.len(), p.total);
    Ok(())
}

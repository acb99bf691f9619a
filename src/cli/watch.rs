//! Upload stations on the command line (issue 16): `upload` for a station account, the
//! doctor's `order` commands, and `watch FOLDER`, which uploads files dropped into a folder.
//!
//! A watch folder never loses or doubles a file across restarts: each file's report id is
//! derived from the station, its name and its content, so a file committed before a crash is
//! recognised (the server answers that this report is committed) instead of uploaded again,
//! and an interrupted one resumes from the upload journal. Files move to `done/` only after
//! the commit, to `failed/` with a `NAME.reason` file when they cannot be uploaded.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use clinvault::api::{OrderInfo, OrderRequest, Role, codes};
use clinvault::client::station::{file_report_id, pick_order, upload_for_order};
use clinvault::client::upload::UploadOptions;
use clinvault::client::{ApiClient, ClientError, LoggedIn};
use clinvault::config::Config;

use super::{ledger, signed_in, unlock};

#[derive(Subcommand)]
pub enum OrderCommand {
    /// Doctor: let a station upload reports for one of your patients (recorded in the ledger).
    Create {
        /// The patient's email or id.
        patient: String,
        /// The station's email, id or name (like Lab-1).
        #[arg(long)]
        station: String,
        /// Days the order stays open (1–90).
        #[arg(long, default_value_t = 14)]
        days: u32,
    },
    /// Doctor: your recent orders. Station: the orders you may upload under now.
    List,
}

pub async fn order(cfg: &Config, cmd: OrderCommand) -> Result<()> {
    let (c, saved) = signed_in(cfg)?;
    match cmd {
        OrderCommand::Create {
            patient,
            station,
            days,
        } => {
            if saved.role != Role::Doctor {
                bail!("only doctors create upload orders");
            }
            let patient_id = super::reports::resolve_patient(&c, &patient).await?;
            let o = c
                .create_order(&OrderRequest {
                    station,
                    patient_id,
                    days: Some(days),
                })
                .await?;
            out!(
                "order {} (ledger entry {}): station {} may upload for {} until {}",
                o.id,
                o.ledger_index,
                super::shown(&o.station_name),
                super::shown(&o.patient_name),
                o.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        OrderCommand::List => {
            let list = c.orders().await?;
            for o in &list.orders {
                out!(
                    "{}  {}  station {:<16} patient {} <{}>  Dr {}  until {}",
                    o.id,
                    o.created_at.format("%Y-%m-%d"),
                    super::shown(&o.station_name),
                    super::shown(&o.patient_name),
                    super::shown(&o.patient_email),
                    super::shown(&o.doctor_name),
                    o.expires_at.format("%Y-%m-%d %H:%M UTC")
                );
            }
            out!(
                "{}",
                super::plural(list.orders.len() as u64, "order", "orders")
            );
        }
    }
    Ok(())
}

fn options<'a>(
    cfg: &Config,
    state_dir: &'a Path,
    title: String,
    note: String,
) -> UploadOptions<'a> {
    UploadOptions {
        state_dir,
        chunk_size: cfg.client.chunk_size,
        transfers: cfg.client.transfers,
        title,
        note,
        cancel: None,
        progress: None,
    }
}

fn no_order(patient: &str) -> String {
    format!(
        "no open order lets this station upload for {patient:?}; the patient's doctor creates \
         one with `clinvault order create PATIENT --station NAME`"
    )
}

/// `clinvault upload` for a station account: under the newest open order for the patient.
pub async fn upload(
    cfg: &Config,
    c: &ApiClient,
    me: &LoggedIn,
    file: &Path,
    patient: &str,
    title: String,
    note: String,
) -> Result<()> {
    let orders = c.orders().await?.orders;
    let order = pick_order(&orders, patient).ok_or_else(|| anyhow!(no_order(patient)))?;
    let l = ledger(cfg, c).await?;
    let title = if title.is_empty() {
        file_name(file)
    } else {
        title
    };
    let state = cfg.client.state_path();
    let out = upload_for_order(
        c,
        me,
        &l,
        order,
        file,
        &options(cfg, &state, title, note),
        None,
    )
    .await?;
    out!(
        "report {} committed (ledger entry {}): submitted by station {} for Dr {}; this station \
         cannot read it",
        out.report_id,
        out.commit.ledger_index,
        super::shown(&order.station_name),
        super::shown(&order.doctor_name)
    );
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What became of one file.
enum Fate {
    Done(Uuid, String),
    Failed(String),
    /// Left where it is, tried again next round (network, session, ledger trouble); `true`
    /// when the session ended and the watcher must sign in again.
    Later(String, bool),
}

fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// The patient named by a file: the regex's `patient` group, else its first group, else the
/// whole match.
fn patient_from(re: &regex::Regex, name: &str) -> Option<String> {
    let caps = re.captures(name)?;
    caps.name("patient")
        .or_else(|| caps.get(1))
        .or_else(|| caps.get(0))
        .map(|m| m.as_str().to_string())
}

/// Skipped: hidden files, partial downloads and our own `.reason` notes.
fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with(".part")
        || name.ends_with(".tmp")
        || name.ends_with(".reason")
}

#[allow(clippy::too_many_arguments)]
async fn one_file(
    cfg: &Config,
    c: &ApiClient,
    me: &LoggedIn,
    l: &clinvault::client::ledger::Ledger,
    orders: &[OrderInfo],
    re: &regex::Regex,
    path: &Path,
    name: &str,
) -> Fate {
    let Some(patient) = patient_from(re, name) else {
        return Fate::Failed(format!(
            "the file name does not match --patient-from-filename {:?}",
            re.as_str()
        ));
    };
    let Some(order) = pick_order(orders, &patient) else {
        return Fate::Failed(no_order(&patient));
    };
    let hash = match sha256_file(path) {
        Ok(h) => h,
        Err(e) => return Fate::Later(format!("reading it: {e}"), false),
    };
    // Recorded before anything is opened: the same file after a restart gets the same id.
    let id = file_report_id(me.login.user.id, name, &hash);
    let state = cfg.client.state_path();
    let opts = options(cfg, &state, name.to_string(), String::new());
    match upload_for_order(c, me, l, order, path, &opts, Some(id)).await {
        Ok(out) => Fate::Done(
            out.report_id,
            format!(
                "uploaded: {} sent, {} already there",
                out.chunks_sent, out.chunks_skipped
            ),
        ),
        // This station's report with this id exists and is committed: a run before a crash
        // committed it. (Another station's id would answer 404, not this.)
        Err(e) if e.code() == Some(codes::REPORT_NOT_OPEN) => {
            Fate::Done(id, "already uploaded".into())
        }
        Err(e) => match &e {
            ClientError::Network(_) => Fate::Later(e.to_string(), false),
            ClientError::Server { status, .. } if *status >= 500 || *status == 429 => {
                Fate::Later(e.to_string(), false)
            }
            ClientError::Server { status: 401, .. } => Fate::Later(e.to_string(), true),
            // Not the file's fault: kept, and the error is shown every round until fixed.
            ClientError::Ledger(_)
            | ClientError::KeyChanged(_)
            | ClientError::Impersonation { .. } => Fate::Later(e.to_string(), false),
            _ => Fate::Failed(e.to_string()),
        },
    }
}

/// Moves `path` into `dir`, under a new name if one is taken there.
fn move_into(path: &Path, dir: &Path, name: &str, tag: &str) -> Result<PathBuf> {
    let mut to = dir.join(name);
    if to.exists() {
        to = dir.join(format!("{name}.{tag}"));
    }
    std::fs::rename(path, &to)
        .with_context(|| format!("moving {} to {}", path.display(), to.display()))?;
    Ok(to)
}

pub struct WatchArgs {
    pub folder: PathBuf,
    pub patient_from_filename: String,
    pub interval_ms: u64,
    pub once: bool,
}

/// Polls `folder`: a file is taken once its size and modification time stayed the same over
/// two polls (a scanner still writing it changes them). With `once`, returns when no file is
/// left to take.
pub async fn watch(cfg: &Config, args: WatchArgs) -> Result<()> {
    let re = regex::Regex::new(&args.patient_from_filename)
        .map_err(|e| anyhow!("--patient-from-filename: {e}"))?;
    let folder = &args.folder;
    if !folder.is_dir() {
        bail!("{} is not a folder", folder.display());
    }
    let done = folder.join("done");
    let failed = folder.join("failed");
    for d in [&done, &failed] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let (mut c, mut me) = unlock(cfg).await?;
    if me.login.user.role != Role::Station {
        bail!(
            "watch is for station accounts (this is a {} account)",
            me.login.user.role
        );
    }
    let station = me.login.user.name.clone();
    eprintln!(
        "watching {} as station {} (every {} ms)",
        folder.display(),
        super::shown(&station),
        args.interval_ms
    );
    let mut seen: HashMap<String, (u64, SystemTime)> = HashMap::new();
    loop {
        let mut later = 0;
        let mut relogin = false;
        let mut ready = Vec::new();
        let mut pending = 0;
        let mut now_seen = HashMap::new();
        for ent in
            std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?
        {
            let ent = ent?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let Ok(meta) = ent.metadata() else { continue };
            if !meta.is_file() || ignored(&name) {
                continue;
            }
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if seen.get(&name) == Some(&stamp) {
                ready.push((ent.path(), name.clone()));
            } else {
                pending += 1;
            }
            now_seen.insert(name, stamp);
        }
        seen = now_seen;
        if !ready.is_empty() {
            let round = async {
                let l = ledger(cfg, &c).await?;
                let orders = c.orders().await?.orders;
                Ok::<_, anyhow::Error>((l, orders))
            }
            .await;
            match round {
                Err(e) => {
                    tracing::warn!(error = %e, "watch: the server or ledger is unavailable; trying again");
                    eprintln!("later   {}", super::shown(&e.to_string()));
                    later += ready.len();
                    relogin = e
                        .downcast_ref::<ClientError>()
                        .and_then(ClientError::code)
                        .is_some_and(|c| {
                            matches!(c, "session_expired" | "session_revoked" | "unauthenticated")
                        });
                }
                Ok((l, orders)) => {
                    for (path, name) in ready {
                        let fate = one_file(cfg, &c, &me, &l, &orders, &re, &path, &name).await;
                        seen.remove(&name);
                        match fate {
                            Fate::Done(id, how) => {
                                let to = move_into(&path, &done, &name, &id.to_string())?;
                                out!("done    {}  report {id} ({how})", to.display());
                            }
                            Fate::Failed(why) => {
                                let to =
                                    move_into(&path, &failed, &name, &Uuid::new_v4().to_string())?;
                                let note = PathBuf::from(format!("{}.reason", to.display()));
                                std::fs::write(&note, format!("{why}\n"))
                                    .with_context(|| format!("writing {}", note.display()))?;
                                out!("failed  {}  {}", to.display(), super::shown(&why));
                            }
                            Fate::Later(why, again) => {
                                later += 1;
                                relogin |= again;
                                out!("later   {}  {}", path.display(), super::shown(&why));
                            }
                        }
                    }
                }
            }
        }
        if relogin {
            (c, me) = unlock(cfg).await?;
        }
        if args.once && pending == 0 {
            if later > 0 {
                bail!("{later} file(s) could not be uploaded now and are still in the folder");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
}

//! `clinvault`: the terminal client, the server and the scriptable commands (DESIGN.md §1).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;
use zeroize::Zeroizing;

use clinvault::api::{Availability, BookRequest, InviteRequest, Role, WeeklyBlock};
use clinvault::client::{ApiClient, session};
use clinvault::config::{self, Config};

/// `println!` that ends quietly when the reader went away (`clinvault slots … | head -1`).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}

mod cli;

#[derive(Parser)]
#[command(
    name = "clinvault",
    version,
    about = "End-to-end encrypted, tamper-evident medical reports"
)]
struct Cli {
    /// Configuration file (TOML); CLINVAULT_* variables and flags override it.
    #[arg(long, global = true, env = "CLINVAULT_CONFIG")]
    config: Option<PathBuf>,
    /// Server URL for client commands (else `[client] server`).
    #[arg(long, global = true)]
    server: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the format constants this build seals with.
    Formats,
    /// Run the server.
    Serve {
        /// Data folder (database, secrets, outbox).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8440.
        #[arg(long)]
        listen: Option<String>,
        /// Log lines as JSON objects (`[server] log_json`).
        #[arg(long)]
        log_json: bool,
    },
    /// Create an account: a patient (mailed code), an invited staff member, or the first admin.
    Register(RegisterArgs),
    /// Log in; keeps the session token (not keys) in the state folder.
    Login {
        #[arg(long)]
        email: String,
    },
    /// End the session on the server and forget the token.
    Logout,
    /// Show who this session belongs to.
    Whoami,
    /// Administrator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Search the doctor directory.
    Doctors {
        /// Part of the name.
        #[arg(long, default_value = "")]
        q: String,
        #[arg(long, default_value = "")]
        specialty: String,
        #[arg(long, default_value_t = 1)]
        page: u32,
    },
    /// Free slots of a doctor.
    Slots {
        doctor: Uuid,
        #[arg(long)]
        from: Option<NaiveDate>,
        #[arg(long)]
        to: Option<NaiveDate>,
    },
    /// Book a slot (START as printed by `slots`, RFC 3339).
    Book {
        doctor: Uuid,
        start: DateTime<Utc>,
        /// Reception: the patient booked for.
        #[arg(long)]
        patient: Option<Uuid>,
    },
    /// Cancel a booking (until its slot begins).
    Cancel { booking: Uuid },
    /// Reception: check a patient in.
    CheckIn { booking: Uuid },
    /// Doctor: mark a visit completed.
    Complete { booking: Uuid },
    /// Record a no-show.
    NoShow { booking: Uuid },
    /// List bookings you may see.
    Bookings {
        #[arg(long)]
        from: Option<NaiveDate>,
        #[arg(long)]
        to: Option<NaiveDate>,
        #[arg(long)]
        status: Option<String>,
    },
    /// Show or set a doctor's weekly availability (default: your own).
    Availability(AvailabilityArgs),
    /// Reception: search patients by name, email or phone (doctors: their own patients).
    Patients {
        #[arg(default_value = "")]
        q: String,
        #[arg(long, default_value_t = 1)]
        page: u32,
    },
    /// Doctor: seal and upload a report for a patient you saw (an interrupted upload of the
    /// same file resumes, sending only what is missing).
    Upload {
        file: PathBuf,
        /// The patient's email or id.
        #[arg(long)]
        patient: String,
        #[arg(long, default_value = "")]
        title: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List reports (doctors and reception: --patient ID for one patient's reports).
    Reports {
        #[arg(long)]
        patient: Option<Uuid>,
    },
    /// Enter a mailed one-time code (the only one waiting, or --request ID from the mail).
    Otp {
        code: String,
        #[arg(long)]
        request: Option<Uuid>,
    },
    /// Mail a new code for a request (the one who enters it, or reception).
    OtpResend { request: Uuid },
    /// Download a report; the file appears only after every check passed.
    Download {
        id: Uuid,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Verify a report (or every report you can read) without writing anything.
    Verify { id: Option<Uuid> },
    /// Another doctor's access to one report.
    #[command(subcommand)]
    Grant(cli::GrantCommand),
    /// Patient: every grant, code check and download of your reports, checked in the ledger.
    Access,
    /// Auditor: replay the ledger and check every replica of every chunk, without keys.
    Audit {
        /// Have the server copy a verified replica over every bad or missing one.
        #[arg(long)]
        repair: bool,
    },
    /// Show the verified ledger head (pins the server's ledger key on first use).
    Ledger,
}

#[derive(Args)]
struct RegisterArgs {
    /// Complete an invite with the mailed code.
    #[arg(long, conflicts_with_all = ["admin_code", "email", "name"])]
    invite: Option<String>,
    /// Register the first administrator with the code `serve` printed.
    #[arg(long)]
    admin_code: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "")]
    phone: String,
    /// Patient, non-interactive: the verification id printed by an earlier run.
    #[arg(long, requires = "code")]
    verification: Option<Uuid>,
    /// Patient, non-interactive: the mailed code.
    #[arg(long, requires = "verification")]
    code: Option<String>,
    /// Patient: only ask for the mail and print the verification id.
    #[arg(long)]
    request_code: bool,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Invite a doctor, reception or auditor account; the code goes out by mail.
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
    /// Operator, on the server machine: a consistent copy of the metadata database (SQLite:
    /// `VACUUM INTO`, safe while servers run; PostgreSQL: `pg_dump --format=custom`).
    Backup {
        #[arg(long)]
        out: PathBuf,
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
    },
}

#[derive(Args)]
struct AvailabilityArgs {
    /// The doctor (default: yourself).
    doctor: Option<Uuid>,
    /// Replace the template: blocks like `mon 09:00-12:00/20` (20-minute slots); repeatable.
    #[arg(long = "block")]
    blocks: Vec<String>,
    /// Days off (YYYY-MM-DD), with --block; repeatable.
    #[arg(long = "day-off")]
    days_off: Vec<NaiveDate>,
    /// Set from a JSON file `{ "weekly": [...], "days_off": [...] }`.
    #[arg(long, conflicts_with = "blocks")]
    file: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, without a backtrace: these are users' errors, not bugs.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(command) => command,
        None => return run_tui(cli.config.as_deref(), cli.server),
    };
    if let Command::Formats = command {
        out!(
            "report format v1: AES-256-GCM chunks ({} B – {} B, default {} B), SHA-256 hash chain, Ed25519 manifest, HPKE-wrapped keys",
            clinvault::seal::MIN_CHUNK_SIZE,
            clinvault::seal::MAX_CHUNK_SIZE,
            clinvault::seal::DEFAULT_CHUNK_SIZE
        );
        return Ok(());
    }
    let mut overrides: Vec<(&str, String)> = Vec::new();
    if let Command::Serve {
        data,
        listen,
        log_json,
    } = &command
    {
        if *log_json {
            overrides.push(("server.log_json", "true".to_string()));
        }
        if let Some(d) = data {
            overrides.push(("server.data", d.display().to_string()));
        }
        if let Some(l) = listen {
            overrides.push(("server.listen", l.clone()));
        }
    }
    if let Some(s) = &cli.server {
        overrides.push(("client.server", s.clone()));
    }
    let cfg = config::load(cli.config.as_deref(), &overrides)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        Command::Serve { .. } => rt.block_on(serve(cfg)),
        other => {
            init_logging("warn", false);
            rt.block_on(client_command(cfg, other))
        }
    }
}

/// No command: the terminal client, on the configured server or on an embedded demo server
/// over `[server] data` (DESIGN.md §1).
fn run_tui(config_file: Option<&std::path::Path>, server: Option<String>) -> Result<()> {
    let mut overrides: Vec<(&str, String)> = Vec::new();
    if let Some(s) = server {
        overrides.push(("client.server", s));
    }
    let cfg = config::load(config_file, &overrides)?;
    let _log = clinvault::tui::log_to_file(&cfg.client.state_path());
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let source = if cfg.client.server.is_empty() {
        let mut server_cfg = cfg.clone();
        server_cfg.server.listen = "127.0.0.1:0".into();
        server_cfg.server.demo = true;
        // Seeding registers a few dozen accounts from this one loopback address.
        server_cfg.server.auth_per_address_per_minute =
            server_cfg.server.auth_per_address_per_minute.max(600);
        let data = server_cfg.server.data.clone();
        let start: clinvault::tui::BoxFuture<Result<clinvault::tui::Embedded, String>> =
            Box::pin(async move {
                let handle = clinvault::server::start(server_cfg)
                    .await
                    .map_err(|e| e.to_string())?;
                let url = handle.url();
                let admin_code = handle.admin_enrollment_code.clone();
                Ok(clinvault::tui::Embedded {
                    url,
                    admin_code,
                    stop: Box::new(move || {
                        Box::pin(async move {
                            let _ = handle.shutdown().await;
                        })
                    }),
                })
            });
        clinvault::tui::ServerSource::Embedded { data, start }
    } else {
        clinvault::tui::ServerSource::Remote(server_url(&cfg)?)
    };
    rt.block_on(clinvault::tui::run(cfg, source))?;
    Ok(())
}

fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // JSON lines carry the request span (its `request_id`) in each event.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

async fn serve(cfg: Config) -> Result<()> {
    init_logging("info,sqlx=warn", cfg.server.log_json);
    let handle = clinvault::server::start(cfg).await?;
    if let Some(code) = &handle.admin_enrollment_code {
        out!(
            "No administrator yet. One-time enrollment code (also in {}):\n\n    {code}\n\n\
             Register with: clinvault --server {} register --admin-code {code} --email YOU@EXAMPLE.ORG --name 'YOUR NAME'\n",
            handle.data.join("admin-enrollment.txt").display(),
            handle.url()
        );
    }
    out!("clinvault serving on {}", handle.url());
    let stop = handle.shutdown_sender();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop.send(true);
    });
    handle.wait().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// From `CLINVAULT_PASSWORD` or a prompt without echo.
fn password(prompt: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("CLINVAULT_PASSWORD") {
        return Ok(Zeroizing::new(p));
    }
    let p = Zeroizing::new(rpassword::prompt_password(prompt).context("reading the password")?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat it: ").context("reading the password")?,
        );
        if *again != *p {
            bail!("the two passwords differ");
        }
    }
    Ok(p)
}

fn read_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading from the terminal")?;
    Ok(line.trim().to_string())
}

fn server_url(cfg: &Config) -> Result<String> {
    if cfg.client.server.is_empty() {
        bail!("no server: pass --server URL or set [client] server in the config");
    }
    Ok(cfg.client.server.trim_end_matches('/').to_string())
}

fn client(cfg: &Config) -> Result<ApiClient> {
    let c = ApiClient::new(
        &server_url(cfg)?,
        cfg.client.allow_insecure_http,
        cfg.client.kdf_floor,
    )?;
    if cfg.client.ca_file.is_empty() {
        return Ok(c);
    }
    let pem = std::fs::read(&cfg.client.ca_file)
        .with_context(|| format!("reading [client] ca_file {}", cfg.client.ca_file))?;
    Ok(c.with_ca_pem(&pem)?)
}

/// A client with the saved session for this server.
fn signed_in(cfg: &Config) -> Result<(ApiClient, session::SavedSession)> {
    let url = server_url(cfg)?;
    let saved = session::load(&cfg.client.state_path(), &url)?
        .ok_or_else(|| anyhow!("not logged in to {url}: run `clinvault login --email …`"))?;
    Ok((client(cfg)?.with_token(saved.token.clone()), saved))
}

fn parse_block(s: &str) -> Result<WeeklyBlock> {
    // `mon 09:00-12:00/20`
    let bad = || anyhow!("block {s:?}: write it like `mon 09:00-12:00/20`");
    let (day, rest) = s.trim().split_once(' ').ok_or_else(bad)?;
    let (times, len) = rest.trim().split_once('/').ok_or_else(bad)?;
    let (start, end) = times.split_once('-').ok_or_else(bad)?;
    Ok(WeeklyBlock {
        weekday: day.to_string(),
        start: start.trim().to_string(),
        end: end.trim().to_string(),
        slot_minutes: len.trim().parse().map_err(|_| bad())?,
    })
}

async fn client_command(cfg: Config, command: Command) -> Result<()> {
    match command {
        Command::Formats | Command::Serve { .. } => unreachable!("handled in main"),
        Command::Register(args) => register(&cfg, args).await,
        Command::Login { email } => {
            let url = server_url(&cfg)?;
            let mut c = client(&cfg)?;
            let pw = password("Password: ", false)?;
            let t = std::time::Instant::now();
            let logged = c.login(&email, &pw).await?;
            session::save(
                &cfg.client.state_path(),
                &session::SavedSession {
                    server: url,
                    token: logged.login.token.clone(),
                    email: logged.login.user.email.clone(),
                    user_id: logged.login.user.id,
                    role: logged.login.user.role,
                },
            )?;
            out!(
                "logged in as {} ({}), keys {} ({:.2} s)",
                logged.login.user.name,
                logged.login.user.role,
                clinvault::seal::fingerprint(&logged.secrets.public()),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Logout => {
            let state = cfg.client.state_path();
            if let Ok((c, _)) = signed_in(&cfg)
                && let Err(e) = c.logout().await
            {
                eprintln!("the server did not confirm the logout: {e}");
            }
            session::remove(&state)?;
            out!("logged out");
            Ok(())
        }
        Command::Whoami => {
            let (c, _) = signed_in(&cfg)?;
            let me = c.me().await?;
            out!("{} <{}> {} {}", me.name, me.email, me.role, me.id);
            Ok(())
        }
        Command::Admin(cmd) => admin(&cfg, cmd).await,
        Command::Doctors { q, specialty, page } => {
            let (c, _) = signed_in(&cfg)?;
            let p = c.doctors(&q, &specialty, page).await?;
            for d in &p.items {
                out!(
                    "{}  {:<28} {:<20} keys {}",
                    d.id,
                    d.name,
                    d.specialty,
                    clinvault::seal::fingerprint(&d.public_keys)
                );
            }
            out!("page {} ({} of {} shown)", p.page, p.items.len(), p.total);
            Ok(())
        }
        Command::Slots { doctor, from, to } => {
            let (c, _) = signed_in(&cfg)?;
            let s = c.slots(doctor, from, to).await?;
            for slot in &s.slots {
                out!(
                    "{}  {} ({} min)",
                    slot.start
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    slot.local_start,
                    (slot.end - slot.start).num_minutes()
                );
            }
            out!("{} free slots, times in {}", s.slots.len(), s.timezone);
            Ok(())
        }
        Command::Book {
            doctor,
            start,
            patient,
        } => {
            let (c, _) = signed_in(&cfg)?;
            let b = c
                .book(&BookRequest {
                    doctor_id: doctor,
                    start,
                    patient_id: patient,
                })
                .await?;
            out!(
                "booked {} with {} at {}",
                b.id,
                b.doctor_name,
                b.start.to_rfc3339()
            );
            Ok(())
        }
        Command::Cancel { booking } => booking_action(&cfg, booking, "cancel").await,
        Command::CheckIn { booking } => booking_action(&cfg, booking, "check-in").await,
        Command::Complete { booking } => booking_action(&cfg, booking, "complete").await,
        Command::NoShow { booking } => booking_action(&cfg, booking, "no-show").await,
        Command::Upload {
            file,
            patient,
            title,
            note,
        } => cli::upload_cmd(&cfg, file, patient, title, note).await,
        Command::Reports { patient } => cli::reports_cmd(&cfg, patient).await,
        Command::Otp { code, request } => cli::otp_cmd(&cfg, code, request).await,
        Command::OtpResend { request } => {
            let (c, _) = signed_in(&cfg)?;
            let p = c.otp_resend(request).await?;
            out!(
                "a new code was mailed for {} (expires {})",
                p.unlocks,
                p.expires_at.to_rfc3339()
            );
            Ok(())
        }
        Command::Download { id, output } => cli::download_cmd(&cfg, id, &output).await,
        Command::Verify { id } => cli::verify_cmd(&cfg, id).await,
        Command::Grant(cmd) => cli::grant_cmd(&cfg, cmd).await,
        Command::Access => cli::access_cmd(&cfg).await,
        Command::Audit { repair } => cli::audit_cmd(&cfg, repair).await,
        Command::Ledger => cli::ledger_cmd(&cfg).await,
        Command::Bookings { from, to, status } => {
            let (c, _) = signed_in(&cfg)?;
            let mut q = Vec::new();
            if let Some(f) = from {
                q.push(("from", f.to_string()));
            }
            if let Some(t) = to {
                q.push(("to", t.to_string()));
            }
            if let Some(s) = status {
                q.push(("status", s));
            }
            let list = c.bookings(&q).await?;
            for b in &list.items {
                out!(
                    "{}  {}  {:<11} doctor {:<24} patient {}",
                    b.id,
                    b.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    b.status.as_str(),
                    b.doctor_name,
                    b.patient_name
                );
            }
            out!("{} bookings", list.items.len());
            Ok(())
        }
        Command::Availability(args) => availability(&cfg, args).await,
        Command::Patients { q, page } => {
            let (c, _) = signed_in(&cfg)?;
            let p = c.patients(&q, page).await?;
            for x in &p.items {
                out!("{}  {:<28} {:<32} {}", x.id, x.name, x.email, x.phone);
            }
            out!("page {} ({} of {} shown)", p.page, p.items.len(), p.total);
            Ok(())
        }
    }
}

async fn booking_action(cfg: &Config, id: Uuid, action: &str) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let b = c.booking_action(id, action).await?;
    out!("booking {} is now {}", b.id, b.status.as_str());
    Ok(())
}

async fn register(cfg: &Config, a: RegisterArgs) -> Result<()> {
    let c = client(cfg)?;
    if let Some(code) = a.invite {
        let info = c.invite_info(&code).await?;
        out!("invite for {} <{}> as {}", info.name, info.email, info.role);
        let pw = password("New password (15+ characters): ", true)?;
        let r = c.register_invite(&code, &pw).await?;
        out!(
            "registered {} as {}; now `clinvault login --email {}`",
            r.user_id,
            r.role,
            info.email
        );
        return Ok(());
    }
    let email = a.email.ok_or_else(|| anyhow!("--email is required"))?;
    let name = a.name.ok_or_else(|| anyhow!("--name is required"))?;
    if let Some(code) = a.admin_code {
        let pw = password("New password (15+ characters): ", true)?;
        let r = c.register_admin(&code, &email, &name, &pw).await?;
        out!(
            "registered administrator {}; now `clinvault login --email {email}`",
            r.user_id
        );
        return Ok(());
    }
    // A patient: a mailed code proves the address.
    let (verification, code) = match (a.verification, a.code) {
        (Some(id), Some(code)) => {
            let pre = c.prelogin(&email).await?;
            (
                clinvault::api::VerifyEmailResponse {
                    verification_id: id,
                    expires_at: Utc::now(),
                    kdf: pre.kdf,
                },
                code,
            )
        }
        _ => {
            let v = c.verify_email(&email).await?;
            if a.request_code {
                out!("{}", v.verification_id);
                eprintln!(
                    "a code was mailed to {email}; finish with --verification {} --code CODE",
                    v.verification_id
                );
                return Ok(());
            }
            let code = read_line(&format!("Code mailed to {email}: "))?;
            (v, code)
        }
    };
    let pw = password("New password (15+ characters): ", true)?;
    let r = c
        .register_patient(&verification, &code, &email, &name, &a.phone, &pw)
        .await?;
    out!(
        "registered {}; now `clinvault login --email {email}`",
        r.user_id
    );
    Ok(())
}

async fn admin(cfg: &Config, cmd: AdminCommand) -> Result<()> {
    use clinvault::server::backup;
    match cmd {
        AdminCommand::Backup { out } => {
            match backup::backup(&cfg.server, &out).await? {
                Some(l) => out!(
                    "backup written to {}: ledger {} entries, root {}",
                    out.display(),
                    l.size,
                    hex::encode(l.root)
                ),
                None => out!("pg_dump wrote {}", out.display()),
            }
            return Ok(());
        }
        AdminCommand::Restore { from, newest_head } => {
            let head = backup::Head::parse(&newest_head, None)?;
            let l = backup::restore(&cfg.server, from.as_deref(), &head).await?;
            out!(
                "{}: ledger {} entries, root {} (reaches the head of {} entries)",
                if from.is_some() {
                    "restored"
                } else {
                    "the database passes"
                },
                l.size,
                hex::encode(l.root),
                head.size
            );
            return Ok(());
        }
        _ => {}
    }
    let (c, _) = signed_in(cfg)?;
    match cmd {
        AdminCommand::Backup { .. } | AdminCommand::Restore { .. } => {}
        AdminCommand::Invite {
            role,
            email,
            name,
            specialty,
            bio,
        } => {
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow!("--role: doctor, reception or auditor"))?;
            let r = c
                .invite(&InviteRequest {
                    role,
                    email: email.clone(),
                    name,
                    specialty,
                    bio,
                })
                .await?;
            out!(
                "invite {} mailed to {email}; valid until {}",
                r.invite_id,
                r.expires_at.to_rfc3339()
            );
        }
        AdminCommand::Users { q, page } => {
            let p = c.users(&q, page).await?;
            for u in &p.items {
                out!(
                    "{}  {:<10} {:<28} {:<32} {}",
                    u.id,
                    u.role.as_str(),
                    u.name,
                    u.email,
                    if u.active { "active" } else { "deactivated" }
                );
            }
            out!("page {} ({} of {} shown)", p.page, p.items.len(), p.total);
        }
        AdminCommand::Deactivate { user } => {
            c.deactivate(user).await?;
            out!("deactivated {user}");
        }
    }
    Ok(())
}

async fn availability(cfg: &Config, a: AvailabilityArgs) -> Result<()> {
    let (c, saved) = signed_in(cfg)?;
    let doctor = a.doctor.unwrap_or(saved.user_id);
    let new = if let Some(f) = a.file {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        Some(
            serde_json::from_str::<Availability>(&text)
                .with_context(|| format!("{} is not availability JSON", f.display()))?,
        )
    } else if !a.blocks.is_empty() {
        Some(Availability {
            weekly: a
                .blocks
                .iter()
                .map(|b| parse_block(b))
                .collect::<Result<_>>()?,
            days_off: a.days_off,
        })
    } else {
        None
    };
    let r = match new {
        Some(av) => c.set_availability(doctor, &av).await?,
        None => c.availability(doctor).await?,
    };
    out!("doctor {} (times in {})", r.doctor_id, r.timezone);
    for b in &r.availability.weekly {
        out!(
            "  {} {}-{} / {} min",
            b.weekday,
            b.start,
            b.end,
            b.slot_minutes
        );
    }
    for d in &r.availability.days_off {
        out!("  off {d}");
    }
    Ok(())
}

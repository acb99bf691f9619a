//! `clinvault`: argument parsing and dispatch. The commands live in `cli/`, one module per area.

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{CommandFactory, Parser, Subcommand};
use uuid::Uuid;

use clinvault::config::{self, Config};

mod cli;

use cli::accounts::RegisterArgs;
use cli::admin::AdminCommand;
use cli::booking::AvailabilityArgs;
use cli::grants::GrantCommand;

#[derive(Parser)]
#[command(
    name = "clinvault",
    version = cli::VERSION,
    about = "End-to-end encrypted, tamper-evident medical reports",
    long_about = "End-to-end encrypted, tamper-evident medical reports.\n\n\
        With no command, clinvault starts the terminal client: on the configured server, or on an \
        embedded demo server over ./clinvault-data when none is configured."
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

/// Commands that need no server connection.
#[derive(Subcommand)]
enum Command {
    /// Print the format constants this build seals with.
    Formats,
    /// Run the server.
    Serve(cli::serve::ServeArgs),
    /// Run a witness: cosigns the ledger's checkpoints only as consistent growth
    /// (c2sp.org/tlog-witness).
    Witness(cli::witness::WitnessArgs),
    /// Check a configuration file and print the effective settings (secrets redacted).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (clinvault.1 and one per command) into DIR.
    Manpages { dir: PathBuf },
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load FILE (default: --config) as `serve` and the client would, refuse unknown keys, and
    /// print the effective settings.
    Check { file: Option<PathBuf> },
}

/// Commands that talk to a server.
#[derive(Subcommand)]
enum ClientCommand {
    /// Create an account: a patient (mailed code), an invited staff member, or the first admin.
    Register(RegisterArgs),
    /// After comparing fingerprints with them: accept a user's new keys, which a key rotation
    /// in the ledger (an administrator's reset) made. A substituted key is never accepted.
    AcceptKey {
        #[arg(long)]
        user: uuid::Uuid,
    },
    /// Log in; keeps the session token (not keys) in the state folder.
    Login {
        #[arg(long)]
        email: String,
        /// Only for an account made before the password salt was bound to the address: log
        /// in once with the server's salt as it is, then move the keys to the new salt.
        #[arg(long)]
        legacy_salt: bool,
    },
    /// End the session on the server and forget the token.
    Logout,
    /// Show who this session belongs to.
    Whoami,
    /// Change the password (the keys stay; other sessions end). Scripts: CLINVAULT_PASSWORD
    /// (current) and CLINVAULT_NEW_PASSWORD.
    Password,
    /// Make a new recovery kit (a code shown once; the earlier one stops working).
    RecoveryKit,
    /// Set a new password with the recovery code. Scripts: CLINVAULT_RECOVERY_CODE and
    /// CLINVAULT_NEW_PASSWORD.
    Recover {
        /// The account's email address (the recovery code and the new password are asked for)
        #[arg(long)]
        email: String,
    },
    /// Password and recovery code both lost: new keys and a new password with the mailed code
    /// (staff: from an administrator's `admin reset-user`; patients: from `register` with the
    /// same address). Scripts: CLINVAULT_RESET_CODE and CLINVAULT_NEW_PASSWORD.
    ResetKeys {
        #[arg(long)]
        email: String,
    },
    /// Second factor for staff: enrol an authenticator app, disable it, show the status.
    /// Login asks for the code (scripts: CLINVAULT_TOTP).
    #[command(subcommand)]
    Totp(cli::totp::TotpCommand),
    /// Administrator and operator commands.
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
    /// Doctor: seal and upload a report for a patient you saw; station: for a patient a doctor
    /// ordered (an interrupted upload of the same file resumes, sending only what is missing).
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
    Grant(GrantCommand),
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
    /// Write a report (yours as patient or author) as one bundle file anyone can verify
    /// offline. The bundle holds the report key in clear: whoever has the file can read it.
    Export {
        id: Uuid,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Check a report bundle with no server: ledger key, witnesses, proofs, signatures, chunks;
    /// with -o, write the plaintext after every check passed.
    VerifyBundle(cli::bundle::VerifyArgs),
    /// Upload orders for stations (issue 16): a doctor lets a station upload for a patient.
    #[command(subcommand)]
    Order(cli::watch::OrderCommand),
    /// Station: upload every file dropped into FOLDER, then move it to FOLDER/done (or to
    /// FOLDER/failed with a .reason file). Password: CLINVAULT_PASSWORD.
    Watch {
        folder: PathBuf,
        /// Finds the patient (email or id) in a file's name: the group named `patient`, else
        /// the first group, e.g. '^([^_]+@[^_]+)_'.
        #[arg(long)]
        patient_from_filename: String,
        /// Milliseconds between two looks at the folder; a file is taken once its size and
        /// time stayed the same over two looks.
        #[arg(long, default_value_t = 2000)]
        interval_ms: u64,
        /// Return once no file is left to take, instead of watching on.
        #[arg(long)]
        once: bool,
    },
    /// Break-glass emergency access (issue 16): open, fetch, veto, list.
    #[command(subcommand)]
    Emergency(cli::emergency::EmergencyCommand),
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, without a backtrace: these are users' errors, not bugs.
            // Errors carry the server's words and other people's names: shown escaped.
            eprintln!("error: {}", clinvault::text::display_lines(&error_text(&e)));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The causes joined with ": ", leaving out a cause already said (an error type that prints
/// its source would otherwise give "already exists: already exists").
fn error_text(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if msg.contains(&s) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s);
    }
    msg
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut overrides: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &cli.server {
        overrides.push(("client.server", s.clone()));
    }
    let Some(command) = cli.command else {
        let cfg = config::load(cli.config.as_deref(), &overrides)?;
        return cli::tui::run(cfg);
    };
    match command {
        Command::Formats => cli::formats(),
        Command::Completions { shell } => cli::docs::completions(Cli::command(), shell),
        Command::Manpages { dir } => cli::docs::manpages(Cli::command(), &dir),
        Command::Config(ConfigCommand::Check { file }) => {
            cli::config_check::run(file.or(cli.config).as_deref(), &overrides)
        }
        Command::Serve(args) => {
            overrides.extend(args.overrides());
            let cfg = config::load(cli.config.as_deref(), &overrides)?;
            runtime()?.block_on(cli::serve::run(cfg))
        }
        Command::Witness(args) => {
            cli::init_logging("info", false);
            runtime()?.block_on(cli::witness::run(args))
        }
        Command::Client(command) => {
            let cfg = config::load(cli.config.as_deref(), &overrides)?;
            cli::init_logging("warn", false);
            runtime()?.block_on(client_command(cfg, command))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

async fn client_command(cfg: Config, command: ClientCommand) -> Result<()> {
    use cli::{accounts, admin, audit, booking, grants, reports};
    let cfg = &cfg;
    match command {
        ClientCommand::Register(args) => accounts::register(cfg, args).await,
        ClientCommand::AcceptKey { user } => accounts::accept_key(cfg, user).await,
        ClientCommand::Login { email, legacy_salt } => {
            accounts::login(cfg, &email, legacy_salt).await
        }
        ClientCommand::Logout => accounts::logout(cfg).await,
        ClientCommand::Whoami => accounts::whoami(cfg).await,
        ClientCommand::Password => accounts::change_password(cfg).await,
        ClientCommand::RecoveryKit => accounts::recovery_kit(cfg).await,
        ClientCommand::Recover { email } => accounts::recover(cfg, &email).await,
        ClientCommand::ResetKeys { email } => accounts::reset_keys(cfg, &email).await,
        ClientCommand::Totp(cmd) => cli::totp::run(cfg, cmd).await,
        ClientCommand::Admin(cmd) => admin::run(cfg, cmd).await,
        ClientCommand::Doctors { q, specialty, page } => {
            booking::doctors(cfg, &q, &specialty, page).await
        }
        ClientCommand::Slots { doctor, from, to } => booking::slots(cfg, doctor, from, to).await,
        ClientCommand::Book {
            doctor,
            start,
            patient,
        } => booking::book(cfg, doctor, start, patient).await,
        ClientCommand::Cancel { booking } => booking::action(cfg, booking, "cancel").await,
        ClientCommand::CheckIn { booking } => booking::action(cfg, booking, "check-in").await,
        ClientCommand::Complete { booking } => booking::action(cfg, booking, "complete").await,
        ClientCommand::NoShow { booking } => booking::action(cfg, booking, "no-show").await,
        ClientCommand::Bookings { from, to, status } => {
            booking::bookings(cfg, from, to, status).await
        }
        ClientCommand::Availability(args) => booking::availability(cfg, args).await,
        ClientCommand::Patients { q, page } => booking::patients(cfg, &q, page).await,
        ClientCommand::Upload {
            file,
            patient,
            title,
            note,
        } => reports::upload(cfg, file, patient, title, note).await,
        ClientCommand::Reports { patient } => reports::list(cfg, patient).await,
        ClientCommand::Otp { code, request } => reports::otp(cfg, code, request).await,
        ClientCommand::OtpResend { request } => reports::otp_resend(cfg, request).await,
        ClientCommand::Download { id, output } => reports::download(cfg, id, &output).await,
        ClientCommand::Verify { id } => reports::verify(cfg, id).await,
        ClientCommand::Grant(cmd) => grants::run(cfg, cmd).await,
        ClientCommand::Access => reports::access(cfg).await,
        ClientCommand::Emergency(cmd) => cli::emergency::run(cfg, cmd).await,
        ClientCommand::Audit { repair } => audit::audit(cfg, repair).await,
        ClientCommand::Ledger => audit::ledger(cfg).await,
        ClientCommand::Export { id, output } => cli::bundle::export(cfg, id, &output).await,
        ClientCommand::VerifyBundle(args) => cli::bundle::verify(cfg, args),
        ClientCommand::Order(cmd) => cli::watch::order(cfg, cmd).await,
        ClientCommand::Watch {
            folder,
            patient_from_filename,
            interval_ms,
            once,
        } => {
            cli::watch::watch(
                cfg,
                cli::watch::WatchArgs {
                    folder,
                    patient_from_filename,
                    interval_ms: interval_ms.max(50),
                    once,
                },
            )
            .await
        }
    }
}

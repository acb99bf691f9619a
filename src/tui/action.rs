//! Everything that can happen to the state (`Action`) and everything `update` asks the loop to
//! do (`Effect`). Finished background jobs come back as actions carrying their request id.

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use ratatui::crossterm::event::KeyEvent;
use uuid::Uuid;
use zeroize::Zeroizing;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::api::{
    BookRequest, Booking, Grant, OtpPending, OtpVerifyResponse, PatientSummary, ReportSummary,
    VerifyEmailResponse,
};
use crate::client::reports::WrapCheck;
use crate::client::{ApiClient, ClientError, LoggedIn};
use crate::tui::state::{
    CalendarData, DoctorRow, HeadInfo, LedgerLine, Mail, ReportSettings, SeedProgress,
};

/// An error as the user sees it: one line, no secrets.
pub type UiResult<T> = Result<T, String>;

pub enum Action {
    Key(KeyEvent),
    Paste(String),
    Resize,
    /// Repaint everything (Ctrl-L).
    Redraw,
    /// No input for `idle_lock_minutes`.
    IdleLock,
    /// The embedded server is up (or a configured one is set).
    ServerReady {
        url: String,
        client: ApiClient,
    },
    ServerFailed(String),
    Seed(SeedProgress),
    LoggedIn(UiResult<Box<(ApiClient, LoggedIn)>>),
    /// The server says the account is on the old salt scheme (issue 17.9): the user may opt in.
    LegacySaltAsked,
    /// The password was right; the account needs a TOTP code, or to enrol (issue 15).
    TotpNeeded(Box<TotpStart>),
    /// The code step finished: the session, and recovery codes if it completed an enrolment.
    TotpLoggedIn(UiResult<Box<(ApiClient, LoggedIn, Vec<String>)>>),
    /// `:totp` from a session: a new secret to show, then the recovery codes (issue 15).
    TotpEnrolStarted(UiResult<crate::api::TotpEnrolment>),
    TotpConfirmed(UiResult<Vec<String>>),
    /// A password change finished (issue 15).
    PasswordChanged(UiResult<()>),
    /// A new recovery kit was stored: its code, to show once.
    KitMade(UiResult<Zeroizing<String>>),
    CodeMailed(UiResult<VerifyEmailResponse>),
    Registered(UiResult<String>),
    /// The debounce of search edit `id` ran out.
    SearchDue {
        id: u64,
    },
    DoctorsLoaded {
        id: u64,
        result: UiResult<(Vec<DoctorRow>, Option<String>)>,
    },
    CalendarLoaded {
        id: u64,
        result: UiResult<CalendarData>,
    },
    BookingsLoaded {
        id: u64,
        result: UiResult<Vec<Booking>>,
    },
    PatientsDue {
        id: u64,
    },
    PatientsLoaded {
        id: u64,
        result: UiResult<Vec<PatientSummary>>,
    },
    Booked(UiResult<Booking>),
    BookingChanged(UiResult<Booking>),
    MailboxLoaded(UiResult<Vec<Mail>>),
    /// Issue 15.3: a wrap check met a key rotation this client has not accepted: shown as a
    /// popup before anything else happens with the grant.
    KeyRotated {
        epoch: u64,
        ledger: Option<Result<HeadInfo, String>>,
        rotated: Box<RotatedKey>,
    },
    /// A report, grant, code or ledger job finished. `ledger` is the sync it started with
    /// (`None` for jobs that need no ledger); on a ledger failure `done` is `None`.
    Vault {
        epoch: u64,
        ledger: Option<Result<HeadInfo, String>>,
        done: Option<Done>,
    },
    /// Bytes moved by transfer `id`.
    TransferProgress {
        id: u64,
        done: u64,
        total: u64,
    },
    /// The server ended the session (expired or revoked): lock, keep nothing.
    SessionEnded(String),
    /// A terminal signal (SIGTERM, SIGHUP): leave now.
    Terminate,
}

/// Why a report job failed: the ledger (red banner), a report's own check (its row turns
/// red), or anything else (status line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    Ledger(String),
    Check(String),
    Other(String),
}

impl Fail {
    pub fn text(&self) -> &str {
        match self {
            Fail::Ledger(s) | Fail::Check(s) | Fail::Other(s) => s,
        }
    }
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Fail {
        match e {
            ClientError::Ledger(m) => Fail::Ledger(m),
            ClientError::Integrity(m) => Fail::Check(m),
            ClientError::Seal(m) => Fail::Check(m.to_string()),
            other => Fail::Other(other.to_string()),
        }
    }
}

pub type Outcome<T> = Result<T, Fail>;

/// A checked report's title (escaped) and its file's extension from the metadata (letters
/// and digits only, possibly empty), for the default save name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Titled {
    pub title: String,
    pub ext: String,
    /// Issue 16: "submitted by station Lab-1 for Dr Herz", checked against the ledger.
    pub origin: Option<String>,
}

/// Report work to do on a task.
pub enum Job {
    /// The caller's reports (or, for a doctor, one patient's).
    List {
        id: u64,
        patient: Option<Uuid>,
    },
    /// Open (everything but the chunks) to show the titles.
    Open(Vec<Uuid>),
    /// Every check, chunks too, writing nothing.
    Verify(Uuid),
    /// Every check, into memory, for the viewer.
    Read(Uuid),
    Download {
        report: Uuid,
        path: PathBuf,
        transfer: u64,
        cancel: Arc<AtomicBool>,
    },
    Upload {
        patient: Uuid,
        path: PathBuf,
        /// The title the doctor gave it (default: the file name without its extension).
        title: String,
        transfer: u64,
        cancel: Arc<AtomicBool>,
    },
    /// A report as a bundle file (issue 16), written only after it verified.
    Export {
        report: Uuid,
        path: PathBuf,
    },
    /// A doctor's own patients, to upload for.
    Patients,
    AskConsent(Uuid),
    Grants(Uuid),
    CheckWrap(Uuid),
    ConfirmWrap(Box<WrapCheck>),
    Approve(Uuid),
    Revoke(Uuid),
    /// Recent ledger entries about the caller.
    Entries,
    OtpList {
        id: u64,
    },
    OtpVerify {
        request: Uuid,
        code: String,
    },
    OtpResend(Uuid),
    /// Issue 15.3: the key holder compared fingerprints and accepts `user`'s rotated keys,
    /// then the grant is checked again (on success the wrap popup opens).
    AcceptKey {
        user: Uuid,
        grant: Uuid,
    },
    /// Issue 16: break-glass (src/tui/update/emergency.rs).
    Emergency(EmJob),
}

/// Break-glass work (issue 16, docs/protocol.md §17).
pub enum EmJob {
    /// Break the glass: the patient as typed (id, or exact email among the doctor's
    /// patients, as the CLI resolves it) and the reason.
    Open { patient: String, reason: String },
    /// The requests the server shows the caller.
    List,
    /// Read one released report: the release's kind-12 entry is checked, then every check
    /// of an ordinary read.
    Read { request: Uuid, report: Uuid },
    /// The patient stops a request during its wait.
    Veto(Uuid),
}

/// What break-glass work found.
#[derive(Debug)]
pub enum EmDone {
    Opened(Outcome<crate::api::emergency::EmergencyRequest>),
    Listed(Outcome<Vec<crate::api::emergency::EmergencyRequest>>),
    Read(Outcome<Box<crate::tui::viewer::Viewer>>),
    Vetoed(Outcome<crate::api::emergency::EmergencyRequest>),
}

impl Job {
    /// Jobs that read or write reports sync the ledger first.
    pub fn needs_ledger(&self) -> bool {
        !matches!(
            self,
            Job::Patients
                | Job::OtpList { .. }
                | Job::OtpVerify { .. }
                | Job::OtpResend(_)
                | Job::Emergency(EmJob::List | EmJob::Veto(_))
        )
    }
}

/// What a job found.
#[derive(Debug)]
pub enum Done {
    Synced,
    Listed {
        id: u64,
        result: Outcome<Vec<ReportSummary>>,
    },
    Opened(Vec<(Uuid, Outcome<Titled>)>),
    Verified {
        report: Uuid,
        result: Outcome<Titled>,
    },
    Read {
        report: Uuid,
        result: Outcome<Box<crate::tui::viewer::Viewer>>,
    },
    Downloaded {
        report: Uuid,
        transfer: u64,
        path: PathBuf,
        result: Outcome<Titled>,
    },
    Uploaded {
        transfer: u64,
        result: Outcome<(Uuid, bool)>,
    },
    Patients(Outcome<Vec<PatientSummary>>),
    /// A bundle written to `path`.
    Exported {
        report: Uuid,
        path: PathBuf,
        result: Outcome<()>,
    },
    ConsentAsked(Outcome<Grant>),
    Grants {
        report: Uuid,
        result: Outcome<Vec<Grant>>,
    },
    WrapChecked(Outcome<Box<WrapCheck>>),
    GrantChanged {
        what: &'static str,
        result: Outcome<Grant>,
    },
    Entries(Outcome<Vec<LedgerLine>>),
    Otp {
        id: u64,
        result: Outcome<Vec<OtpPending>>,
    },
    OtpVerified(Outcome<OtpVerifyResponse>),
    OtpResent(Outcome<OtpPending>),
    /// Issue 16: break-glass.
    Emergency(EmDone),
}

/// What the TOTP step of a login starts with (issue 15).
pub struct TotpStart {
    pub client: ApiClient,
    pub email: String,
    pub pending: crate::client::totp::PendingLogin,
    /// Set when the account must enrol first: the secret to show.
    pub enrolment: Option<crate::api::TotpEnrolment>,
}

/// Everything a report job needs, cloned out of the state.
#[derive(Clone)]
pub struct VaultCtx {
    pub client: ApiClient,
    pub me: Arc<LoggedIn>,
    pub settings: ReportSettings,
    pub lock: Arc<tokio::sync::Mutex<()>>,
}

pub enum Effect {
    /// Send `action` after `after` (debounce).
    Later {
        after: Duration,
        action: Box<Action>,
    },
    Login {
        client: ApiClient,
        email: String,
        password: Zeroizing<String>,
        /// Where the ledger is kept, for the login's self-check (issue 11).
        settings: ReportSettings,
    },
    /// Issue 15, from a session: a new TOTP secret, and its first code.
    TotpEnrol {
        client: ApiClient,
    },
    TotpConfirm {
        client: ApiClient,
        code: Zeroizing<String>,
    },
    /// The login's code step (issue 15).
    LoginTotp {
        client: ApiClient,
        pending: Arc<crate::client::totp::PendingLogin>,
        code: Zeroizing<String>,
        settings: ReportSettings,
    },
    VerifyEmail {
        client: ApiClient,
        email: String,
    },
    RegisterPatient {
        client: ApiClient,
        verification: VerifyEmailResponse,
        code: String,
        email: String,
        name: String,
        phone: String,
        password: Zeroizing<String>,
    },
    Logout {
        client: ApiClient,
    },
    Recover {
        client: ApiClient,
        email: String,
        code: Zeroizing<String>,
        new: Zeroizing<String>,
        settings: ReportSettings,
    },
    MakeKit {
        client: ApiClient,
        password: Zeroizing<String>,
    },
    ChangePassword {
        client: ApiClient,
        current: Zeroizing<String>,
        new: Zeroizing<String>,
    },
    SearchDoctors {
        client: ApiClient,
        id: u64,
        query: String,
        today: NaiveDate,
    },
    LoadCalendar {
        client: ApiClient,
        id: u64,
        doctor: Uuid,
        month: NaiveDate,
        today: NaiveDate,
        with_availability: bool,
    },
    LoadBookings {
        client: ApiClient,
        id: u64,
        from: NaiveDate,
        to: NaiveDate,
    },
    SearchPatients {
        client: ApiClient,
        id: u64,
        query: String,
    },
    Book {
        client: ApiClient,
        request: BookRequest,
    },
    Transition {
        client: ApiClient,
        booking: Uuid,
        action: &'static str,
    },
    LoadMailbox {
        dir: PathBuf,
    },
    Vault {
        epoch: u64,
        ctx: VaultCtx,
        job: Job,
    },
}

/// A key rotation met while checking a grant (issue 15.3): whose keys, for which grant, and
/// the client's loud text (date, authoriser, both fingerprints).
#[derive(Debug, Clone)]
pub struct RotatedKey {
    pub user: Uuid,
    pub grant: Uuid,
    pub text: String,
}

//! The whole client state. `view` draws from it alone; `update` is the only writer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use ratatui_textarea::TextArea;
use uuid::Uuid;

use crate::api::{
    AvailabilityResponse, Booking, Doctor, Grant, OtpPending, PatientSummary, ReportSummary, Role,
    Slot, UserInfo, VerifyEmailResponse,
};
use crate::client::{ApiClient, LoggedIn};
use crate::ledger::LedgerKey;
use crate::tui::keymap::KeyMap;
use crate::tui::listfilter::ListFilter;
use crate::tui::theme::Theme;

/// Panes, in Tab order. Reports, OTP and Ledger keep their digits (4–6) for the report layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    Doctors,
    Calendar,
    Bookings,
    Reports,
    Otp,
    Ledger,
    Mailbox,
    Help,
}

impl Pane {
    pub const ALL: [Pane; 8] = [
        Pane::Doctors,
        Pane::Calendar,
        Pane::Bookings,
        Pane::Reports,
        Pane::Otp,
        Pane::Ledger,
        Pane::Mailbox,
        Pane::Help,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Doctors => "Doctors",
            Pane::Calendar => "Calendar",
            Pane::Bookings => "Bookings",
            Pane::Reports => "Reports",
            Pane::Otp => "OTP",
            Pane::Ledger => "Ledger",
            Pane::Mailbox => "Mailbox",
            Pane::Help => "Help",
        }
    }

    /// Who sees the pane (DESIGN.md §4); the server enforces the same per route.
    pub fn available(self, role: Role, demo: bool) -> bool {
        match self {
            Pane::Doctors => matches!(
                role,
                Role::Patient | Role::Reception | Role::Admin | Role::Doctor
            ),
            Pane::Calendar => matches!(role, Role::Patient | Role::Reception | Role::Doctor),
            Pane::Bookings => matches!(role, Role::Patient | Role::Reception | Role::Doctor),
            // Reports and their codes are for the people in them (DESIGN.md §4, §5).
            Pane::Reports => matches!(role, Role::Patient | Role::Doctor),
            Pane::Otp => matches!(role, Role::Patient | Role::Doctor),
            Pane::Ledger => true,
            Pane::Mailbox => demo,
            Pane::Help => true,
        }
    }
}

/// "Now" for the view and update: injected so snapshots do not depend on the day they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: DateTime<Utc>,
    pub today: NaiveDate,
}

impl Clock {
    /// Now, with "today" in the clinic's time zone.
    pub fn system(tz: chrono_tz::Tz) -> Clock {
        let now = Utc::now();
        Clock {
            now,
            today: now.with_timezone(&tz).date_naive(),
        }
    }

    pub fn fixed(now: DateTime<Utc>) -> Clock {
        Clock {
            now,
            today: now.date_naive(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// Empty while the embedded server starts.
    pub url: String,
    /// Embedded demo server: demo accounts on the login screen, the Mailbox pane.
    pub demo: bool,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedProgress {
    pub done: u32,
    pub total: u32,
    pub step: String,
    pub finished: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Login,
    Register,
    /// A lost password: the recovery code sets a new one (issue 15).
    Recover,
    /// The outbox before logging in (demo mode), to read a registration code.
    Mailbox,
    /// The login's TOTP step, enrolment at login, and the recovery codes (issue 15).
    Totp,
    Main,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginField {
    Email,
    Password,
    Register,
    Recover,
}

/// Which field of the recovery screen has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverField {
    Email,
    Code,
    New,
    Again,
}

/// The recovery screen: the code and the new password are `SecretField`s (wiped on send).
pub struct RecoverForm {
    pub email: TextArea<'static>,
    pub code: crate::tui::secret::SecretField,
    pub new: crate::tui::secret::SecretField,
    pub again: crate::tui::secret::SecretField,
    pub focus: RecoverField,
    pub busy: bool,
    pub message: Option<String>,
}

impl Default for RecoverForm {
    fn default() -> Self {
        RecoverForm {
            email: text_field("email"),
            code: crate::tui::secret::SecretField::new("recovery code, XXXX-XXXX-…"),
            new: crate::tui::secret::SecretField::new("new password, 15+ characters"),
            again: crate::tui::secret::SecretField::new("the new password again"),
            focus: RecoverField::Email,
            busy: false,
            message: None,
        }
    }
}

pub fn text_field(placeholder: &str) -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_placeholder_text(placeholder);
    t.set_cursor_line_style(ratatui::style::Style::new());
    t
}

pub fn password_field(placeholder: &str) -> TextArea<'static> {
    let mut t = text_field(placeholder);
    t.set_mask_char('•');
    t
}

pub fn field_text(t: &TextArea) -> String {
    t.lines().join("")
}

pub struct LoginForm {
    pub email: TextArea<'static>,
    pub password: crate::tui::secret::SecretField,
    pub focus: LoginField,
    pub busy: bool,
    pub message: Option<String>,
    /// Set by the idle lock: the account to unlock.
    pub locked: Option<String>,
    /// Enter was pressed while the demo accounts were being made: log in once they are.
    pub waiting_for_seed: bool,
    /// The pane the lock left: unlocking returns to it.
    pub return_to: Option<Pane>,
    /// The server said the account is on the old salt scheme: Ctrl+G logs in with the opt-in.
    pub legacy_offer: bool,
    /// The user pressed Ctrl+G: the next login carries the opt-in.
    pub legacy_confirmed: bool,
}

impl Default for LoginForm {
    fn default() -> Self {
        LoginForm {
            email: text_field("email"),
            password: crate::tui::secret::SecretField::new("password"),
            focus: LoginField::Email,
            busy: false,
            message: None,
            locked: None,
            waiting_for_seed: false,
            return_to: None,
            legacy_offer: false,
            legacy_confirmed: false,
        }
    }
}

/// Issue 15: the login's TOTP step. With `enrolment`, the account's role requires TOTP and
/// it has none: the QR code and secret are shown and the first code completes the login.
/// After an enrolment the session waits in `recovery` while its recovery codes are shown,
/// once.
#[derive(Default)]
pub struct TotpForm {
    pub email: String,
    pub client: Option<ApiClient>,
    pub pending: Option<Arc<crate::client::totp::PendingLogin>>,
    pub enrolment: Option<crate::api::TotpEnrolment>,
    pub code: TotpCode,
    pub busy: bool,
    pub message: Option<String>,
    pub recovery: Option<TotpRecovery>,
    /// Enrolling from a session (`:totp`), not at login: the code goes to `confirm`, and the
    /// screen returns to the panes.
    pub signed_in: bool,
}

/// The code field: masked, since a recovery code is a lasting secret.
pub struct TotpCode(pub crate::tui::secret::SecretField);

impl Default for TotpCode {
    fn default() -> Self {
        TotpCode(crate::tui::secret::SecretField::new(
            "6 digits or a recovery code",
        ))
    }
}

/// A finished enrolment: at login, the session, held back until the recovery codes were
/// seen (`None` when enrolling from a session).
pub struct TotpRecovery {
    pub codes: Vec<String>,
    pub session: Option<Box<(ApiClient, crate::client::LoggedIn)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterField {
    Email,
    Name,
    Phone,
    Password,
    /// The password again.
    Confirm,
    Code,
}

pub struct RegisterForm {
    pub email: TextArea<'static>,
    pub name: TextArea<'static>,
    pub phone: TextArea<'static>,
    pub password: crate::tui::secret::SecretField,
    pub confirm: crate::tui::secret::SecretField,
    pub code: TextArea<'static>,
    pub focus: RegisterField,
    /// After the code was mailed.
    pub verification: Option<VerifyEmailResponse>,
    pub busy: bool,
    pub message: Option<String>,
}

impl Default for RegisterForm {
    fn default() -> Self {
        RegisterForm {
            email: text_field("you@example.org"),
            name: text_field("full name"),
            phone: text_field("optional"),
            password: crate::tui::secret::SecretField::new("15+ characters, a passphrase"),
            confirm: crate::tui::secret::SecretField::new("the same again"),
            code: text_field("6 digits from the mail"),
            focus: RegisterField::Email,
            verification: None,
            busy: false,
            message: None,
        }
    }
}

/// A logged-in user. Dropping the last `Arc` of `keys` zeroizes the secret keys
/// (`UserSecrets`) and the `wrap_key` that seals upload state.
pub struct Session {
    pub user: UserInfo,
    pub client: ApiClient,
    /// `None` only in hand-made test state.
    pub keys: Option<Arc<LoggedIn>>,
}

#[derive(Debug, Clone)]
pub struct DoctorRow {
    pub doctor: Doctor,
    pub next_free: Option<Slot>,
}

pub struct DoctorsPane {
    pub query: TextArea<'static>,
    pub editing: bool,
    /// Rises with every edit; only the answer to the latest is kept.
    pub request_id: u64,
    pub loading: bool,
    pub error: Option<String>,
    pub rows: Vec<DoctorRow>,
    pub selected: usize,
    /// What `rows` answer (the query at the time).
    pub shown_query: String,
}

impl Default for DoctorsPane {
    fn default() -> Self {
        DoctorsPane {
            query: text_field("name or specialty, e.g. cardio"),
            editing: false,
            request_id: 0,
            loading: false,
            error: None,
            rows: Vec::new(),
            selected: 0,
            shown_query: String::new(),
        }
    }
}

/// What a day of the calendar lists: free slots and the bookings the user may see.
#[derive(Debug, Clone)]
pub enum DayRow {
    Free(Slot),
    Booked(Booking),
}

impl DayRow {
    pub fn start(&self) -> DateTime<Utc> {
        match self {
            DayRow::Free(s) => s.start,
            DayRow::Booked(b) => b.start,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CalendarData {
    pub doctor: Doctor,
    pub slots: Vec<Slot>,
    pub bookings: Vec<Booking>,
    /// None when this role may not read availability (patients): days without slots dim.
    pub availability: Option<AvailabilityResponse>,
    pub timezone: String,
    /// Days from today on without opening hours, from the slots answer (every role).
    pub closed: Vec<NaiveDate>,
}

#[derive(Default)]
pub struct CalendarPane {
    pub doctor: Option<Doctor>,
    /// Any day of the shown month; `selected` is in it.
    pub selected: Option<NaiveDate>,
    pub request_id: u64,
    pub loading: bool,
    pub error: Option<String>,
    pub data: Option<CalendarData>,
    /// Index into the selected day's rows.
    pub row: usize,
    /// Keys act on the day's rows rather than on the grid.
    pub in_day: bool,
}

impl CalendarPane {
    pub fn month_start(&self, today: NaiveDate) -> NaiveDate {
        let d = self.selected.unwrap_or(today);
        d.with_day(1).unwrap_or(d)
    }
}

pub struct BookingsPane {
    pub request_id: u64,
    pub loading: bool,
    pub error: Option<String>,
    /// What is shown: `all` through the `/` filter.
    pub items: Vec<Booking>,
    pub selected: usize,
    pub all: Vec<Booking>,
    pub filter: ListFilter,
}

impl Default for BookingsPane {
    fn default() -> Self {
        BookingsPane {
            request_id: 0,
            loading: false,
            error: None,
            items: Vec::new(),
            selected: 0,
            all: Vec::new(),
            filter: ListFilter::new("patient, doctor, date or status"),
        }
    }
}

impl BookingsPane {
    /// `items` from `all` and the filter: every word must be in the row.
    pub fn refilter(&mut self, tz: chrono_tz::Tz) {
        let words = self.filter.words();
        self.items = self
            .all
            .iter()
            .filter(|b| {
                let hay = format!(
                    "{} {} {} {}",
                    b.patient_name,
                    b.doctor_name,
                    b.start.with_timezone(&tz).format("%a %Y-%m-%d %H:%M"),
                    crate::tui::update::status_word(b.status)
                );
                ListFilter::fits(&words, &hay)
            })
            .cloned()
            .collect();
        self.selected = self.selected.min(self.items.len().saturating_sub(1));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub file: String,
    pub date: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

#[derive(Default)]
pub struct MailboxPane {
    pub loading: bool,
    pub error: Option<String>,
    /// What is shown: `all` through the `/` filter.
    pub items: Vec<Mail>,
    pub selected: usize,
    pub all: Vec<Mail>,
    /// The `/` filter: every word must be in the recipient, subject or date.
    pub filter: ListFilter,
    /// Lines of the selected mail's body scrolled off (PgDn / PgUp); 0 on another mail.
    pub body_scroll: u16,
}

/// A change waiting for the user's yes.
#[derive(Debug, Clone)]
pub enum Pending {
    Book {
        doctor_id: Uuid,
        doctor_name: String,
        slot: Slot,
        patient: Option<(Uuid, String)>,
    },
    Transition {
        booking: Booking,
        action: &'static str,
    },
    /// Stop the running transfer (an upload resumes when the same file is uploaded again).
    StopTransfer,
    /// A doctor asks the patient's consent to read a report.
    AskConsent {
        report: Uuid,
        patient: String,
        author: String,
    },
    /// Export a report as a bundle (issue 16): the file holds its key in clear.
    Export {
        report: Uuid,
        title: String,
    },
    /// The patient approves a grant (signs the consent, wraps the key).
    Approve(Box<Grant>),
    Revoke(Box<Grant>),
}

pub struct PatientPicker {
    pub query: TextArea<'static>,
    pub request_id: u64,
    pub results: Vec<PatientSummary>,
    pub selected: usize,
    pub error: Option<String>,
    pub doctor_id: Uuid,
    pub doctor_name: String,
    pub slot: Slot,
    /// The new-booking flow (`n`): no slot yet, the doctor is chosen next.
    pub choose_doctor: bool,
}

/// The new-booking flow's second step: the doctor (the Doctors search, with its "next
/// free" slot, which the confirmation offers).
pub struct DoctorStep {
    pub patient: (Uuid, String),
}

pub struct Palette {
    pub input: TextArea<'static>,
    pub selected: usize,
}

pub enum Popup {
    Confirm(Pending),
    /// A doctor chooses which of their patients a report is for.
    PickUploadPatient(Box<UploadPicker>),
    /// A file to upload or where to save a download.
    Path(Box<PathEntry>),
    /// The grants of one report.
    Grants(Box<GrantsView>),
    /// A checked grant waiting for the key holder's yes before the key is wrapped.
    Wrap(Box<crate::client::reports::WrapCheck>),
    /// Issue 15.3: the reader's keys were rotated; nothing is wrapped until accepted.
    KeyRotated(Box<crate::tui::action::RotatedKey>),
    PickPatient(Box<PatientPicker>),
    PickDoctor(Box<DoctorStep>),
    Palette(Box<Palette>),
    /// The message history, scrolled by this many lines from the newest.
    Messages(u16),
    /// Quit asked while requests run.
    ConfirmQuit,
    /// A report read into memory (dropping it wipes the text).
    Viewer(Box<crate::tui::viewer::Viewer>),
    /// A new password for the same keys (issue 15).
    Password(Box<PasswordChange>),
    /// A new recovery kit: the password, then the code shown once (issue 15).
    RecoveryKit(Box<KitPopup>),
    /// Issue 16: break the glass on a patient (emergency-team doctors).
    BreakGlass(Box<crate::tui::state::BreakGlass>),
    /// Issue 16: break-glass requests (yours, or on you): fetch, read, veto.
    Emergencies(Box<crate::tui::state::EmergencyView>),
}

/// The recovery-kit popup. The code is held only while shown; closing drops (wipes) it.
pub struct KitPopup {
    pub password: crate::tui::secret::SecretField,
    pub code: Option<zeroize::Zeroizing<String>>,
    pub busy: bool,
    pub message: Option<String>,
}

impl Default for KitPopup {
    fn default() -> Self {
        KitPopup {
            password: crate::tui::secret::SecretField::new("your password"),
            code: None,
            busy: false,
            message: None,
        }
    }
}

/// Which field of the password change has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordField {
    Current,
    New,
    Again,
}

/// The password-change popup: three masked fields, wiped when it closes or is sent.
pub struct PasswordChange {
    pub current: crate::tui::secret::SecretField,
    pub new: crate::tui::secret::SecretField,
    pub again: crate::tui::secret::SecretField,
    pub focus: PasswordField,
    pub message: Option<String>,
}

impl PasswordChange {
    pub fn new() -> PasswordChange {
        PasswordChange {
            current: crate::tui::secret::SecretField::new("current password"),
            new: crate::tui::secret::SecretField::new("new password, 15+ characters"),
            again: crate::tui::secret::SecretField::new("the new password again"),
            focus: PasswordField::Current,
            message: None,
        }
    }

    pub fn focused(&mut self) -> &mut crate::tui::secret::SecretField {
        match self.focus {
            PasswordField::Current => &mut self.current,
            PasswordField::New => &mut self.new,
            PasswordField::Again => &mut self.again,
        }
    }
}

impl Default for PasswordChange {
    fn default() -> Self {
        Self::new()
    }
}

impl Popup {
    pub fn palette() -> Popup {
        Popup::Palette(Box::new(Palette {
            input: text_field("command"),
            selected: crate::tui::update::palette_default(""),
        }))
    }
}

/// Where a report stands for this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Not opened yet: the title shows as "…".
    Unchecked,
    /// Manifest, signature, ledger entries and key commitment checked; title decrypted here.
    Opened { title: String },
    /// Every chunk too.
    Verified { title: String },
    /// A check failed: which one.
    Failed(String),
}

impl Check {
    pub fn title(&self) -> Option<&str> {
        match self {
            Check::Opened { title } | Check::Verified { title } => Some(title),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReportRow {
    pub summary: ReportSummary,
    pub check: Check,
}

pub struct ReportsPane {
    pub request_id: u64,
    pub loading: bool,
    pub error: Option<String>,
    pub rows: Vec<ReportRow>,
    pub selected: usize,
    /// A doctor looking at one patient's reports (to ask consent).
    pub patient: Option<(Uuid, String)>,
    /// Reports this doctor asked consent for in this session: "consent requested".
    pub consent_asked: std::collections::HashSet<Uuid>,
    /// Each checked report's file extension from its metadata, for the default save name.
    pub exts: std::collections::HashMap<Uuid, String>,
    /// Issue 16: each checked station report's "submitted by station … for Dr …".
    pub origins: std::collections::HashMap<Uuid, String>,
    /// The running upload: (patient, file name).
    pub uploading: Option<(Uuid, String)>,
    /// The `/` filter: every word must be in the row's date, names, title or state.
    pub filter: ListFilter,
    /// Uploads stopped in this session, by patient: the file name, shown on its `incomplete`
    /// row (whose title is sealed and not yet readable).
    pub stopped: std::collections::HashMap<Uuid, String>,
}

impl Default for ReportsPane {
    fn default() -> Self {
        ReportsPane {
            request_id: 0,
            loading: false,
            error: None,
            rows: Vec::new(),
            selected: 0,
            patient: None,
            consent_asked: Default::default(),
            exts: Default::default(),
            origins: Default::default(),
            uploading: None,
            filter: ListFilter::new("date, doctor, patient, title or state"),
            stopped: Default::default(),
        }
    }
}

impl ReportsPane {
    /// Indexes into `rows` of what the filter lets through; `selected` indexes this list.
    pub fn visible(&self, tz: chrono_tz::Tz) -> Vec<usize> {
        let words = self.filter.words();
        (0..self.rows.len())
            .filter(|i| {
                if words.is_empty() {
                    return true;
                }
                let r = &self.rows[*i];
                let s = &r.summary;
                let state = match &r.check {
                    Check::Verified { .. } => "verified",
                    Check::Failed(_) => "failed",
                    _ if s.status == "awaiting_release" => "awaiting code",
                    _ if s.status == "open" => "incomplete",
                    _ => s.status.as_str(),
                };
                let hay = format!(
                    "{} {} {} {} {} {}",
                    s.created_at.with_timezone(&tz).format("%Y-%m-%d"),
                    s.author_name,
                    s.patient_name,
                    r.check.title().or(self.stopped_file(r)).unwrap_or(""),
                    state,
                    if self.consent_asked.contains(&s.id) {
                        "consent requested"
                    } else {
                        ""
                    }
                );
                ListFilter::fits(&words, &hay)
            })
            .collect()
    }

    /// The selected row, through the filter.
    pub fn selected_row(&self, tz: chrono_tz::Tz) -> Option<&ReportRow> {
        self.visible(tz)
            .get(self.selected)
            .and_then(|i| self.rows.get(*i))
    }

    /// The file name of a stopped upload's row, when this session stopped it and it is the
    /// patient's only incomplete report (so the name cannot be put on the wrong row).
    pub fn stopped_file(&self, row: &ReportRow) -> Option<&str> {
        let s = &row.summary;
        if s.status != "open" {
            return None;
        }
        let open = self
            .rows
            .iter()
            .filter(|r| r.summary.status == "open" && r.summary.patient_id == s.patient_id)
            .count();
        (open == 1)
            .then(|| self.stopped.get(&s.patient_id).map(String::as_str))
            .flatten()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Upload,
    Download,
}

/// The transfer running (one at a time).
#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: u64,
    pub kind: TransferKind,
    pub label: String,
    pub done: u64,
    pub total: u64,
    pub started: DateTime<Utc>,
    pub cancel: Arc<AtomicBool>,
    /// Recent progress, for the rate and time left.
    pub meter: crate::tui::rate::RateMeter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickFor {
    /// Upload a report for the patient.
    Upload,
    /// List the patient's reports (to ask consent).
    Filter,
}

pub struct UploadPicker {
    pub purpose: PickFor,
    pub loading: bool,
    pub error: Option<String>,
    pub items: Vec<PatientSummary>,
    pub selected: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathFor {
    Upload {
        patient: Uuid,
        name: String,
    },
    Download {
        report: Uuid,
    },
    /// Where to write a report's bundle.
    Export {
        report: Uuid,
    },
    /// Reception mails a patient's code again: the request id is in the patient's mail.
    ResendCode,
    /// The upload's title, after its file was chosen.
    UploadTitle {
        patient: Uuid,
        name: String,
        path: PathBuf,
    },
}

pub struct PathEntry {
    pub purpose: PathFor,
    pub input: TextArea<'static>,
}

pub struct GrantsView {
    pub report: Uuid,
    pub loading: bool,
    pub error: Option<String>,
    pub items: Vec<Grant>,
    pub selected: usize,
}

pub struct OtpPane {
    pub request_id: u64,
    pub loading: bool,
    pub error: Option<String>,
    pub items: Vec<OtpPending>,
    pub selected: usize,
    pub code: TextArea<'static>,
    /// The code field has the keys.
    pub editing: bool,
    /// What is listed: `items` is `all` through the `/` filter.
    pub all: Vec<OtpPending>,
    /// The `/` filter: every word must be in what the code unlocks or the request's words.
    pub filter: ListFilter,
}

impl Default for OtpPane {
    fn default() -> Self {
        OtpPane {
            request_id: 0,
            loading: false,
            error: None,
            items: Vec::new(),
            selected: 0,
            code: text_field("6 digits from the mail"),
            editing: false,
            all: Vec::new(),
            filter: ListFilter::new("what it unlocks, id or time"),
        }
    }
}

impl OtpPane {
    /// `items` from `all` and the filter.
    pub fn refilter(&mut self, tz: chrono_tz::Tz) {
        let words = self.filter.words();
        self.items = self
            .all
            .iter()
            .filter(|p| {
                ListFilter::fits(
                    &words,
                    &format!(
                        "{} {}",
                        crate::text::display(&p.unlocks),
                        p.request_words(tz)
                    ),
                )
            })
            .cloned()
            .collect();
        self.selected = self.selected.min(self.items.len().saturating_sub(1));
    }
}

impl MailboxPane {
    /// `items` from `all` and the filter.
    pub fn refilter(&mut self) {
        let words = self.filter.words();
        self.items = self
            .all
            .iter()
            .filter(|m| ListFilter::fits(&words, &format!("{} {} {}", m.to, m.subject, m.date)))
            .cloned()
            .collect();
        self.selected = self.selected.min(self.items.len().saturating_sub(1));
    }
}

/// The last head this client verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadInfo {
    pub tree_size: u64,
    /// Hex of the root's first 8 bytes.
    pub root: String,
    pub time_ms: i64,
    pub key: String,
    pub pinned_now: bool,
    /// Configured witnesses that cosigned the head; `None` when none are configured.
    pub cosigned_by: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerLine {
    pub index: u64,
    pub time_ms: i64,
    pub text: String,
    /// The report the entry is about, if it names one.
    pub report: Option<uuid::Uuid>,
    /// The grant it is about, if it names one (a revocation names only its grant).
    pub grant: Option<uuid::Uuid>,
}

pub struct LedgerView {
    pub syncing: bool,
    pub head: Option<HeadInfo>,
    /// A ledger check failed: the red banner, and no report action until a sync passes.
    pub failed: Option<String>,
    pub entries_loading: bool,
    pub entries: Vec<LedgerLine>,
    pub selected: usize,
    /// `t` in Reports: only this report's trail (id, title). Esc or leaving the pane ends it.
    pub trail: Option<(uuid::Uuid, String)>,
    /// The `/` filter: every word must be in the entry's text.
    pub filter: ListFilter,
}

impl Default for LedgerView {
    fn default() -> Self {
        LedgerView {
            syncing: false,
            head: None,
            failed: None,
            entries_loading: false,
            entries: Vec::new(),
            selected: 0,
            trail: None,
            filter: ListFilter::new("words in the entry"),
        }
    }
}

impl LedgerView {
    /// The entries shown: all, or one report's trail (its entries and its grants' revocations).
    pub fn shown(&self) -> Vec<&LedgerLine> {
        let words = self.filter.words();
        let fits = |e: &LedgerLine| ListFilter::fits(&words, &e.text);
        let Some((id, _)) = &self.trail else {
            return self.entries.iter().filter(|e| fits(e)).collect();
        };
        let grants: std::collections::HashSet<uuid::Uuid> = self
            .entries
            .iter()
            .filter(|e| e.report == Some(*id))
            .filter_map(|e| e.grant)
            .collect();
        self.entries
            .iter()
            .filter(|e| e.report == Some(*id) || e.grant.is_some_and(|g| grants.contains(&g)))
            .filter(|e| fits(e))
            .collect()
    }
}

/// What report work needs from the config.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    pub state_dir: PathBuf,
    pub ledger_key: Option<LedgerKey>,
    pub max_head_age_secs: u64,
    pub transfers: usize,
    pub chunk_size: u32,
    /// Where downloads go by default.
    pub download_dir: PathBuf,
    /// Witnesses whose cosignatures count, and the quorum a head needs.
    pub witnesses: crate::client::ledger::WitnessPolicy,
}

impl Default for ReportSettings {
    fn default() -> Self {
        let c = crate::config::ClientConfig::default();
        ReportSettings {
            state_dir: c.state_path(),
            ledger_key: None,
            max_head_age_secs: c.max_head_age_secs,
            transfers: c.transfers,
            chunk_size: c.chunk_size,
            download_dir: PathBuf::from("."),
            witnesses: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub info: Option<String>,
    /// Shown in full in the message line above the status bar until Esc or a pane change.
    pub error: Option<String>,
    /// Requests in flight.
    pub busy: u32,
    /// Every message of this session, oldest first (`:messages`); wiped with the session.
    pub history: Vec<Message>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub at: DateTime<Utc>,
    pub error: bool,
    pub text: String,
}

/// The history keeps the latest messages only.
pub const MESSAGES_KEPT: usize = 200;

pub struct App {
    pub clock: Clock,
    pub theme: Theme,
    pub keys: KeyMap,
    pub server: ServerInfo,
    pub seed: Option<SeedProgress>,
    pub screen: Screen,
    /// Where the pre-login mailbox returns to.
    pub back_screen: Screen,
    pub login: LoginForm,
    pub register: RegisterForm,
    pub recover: RecoverForm,
    pub totp: TotpForm,
    pub session: Option<Session>,
    pub pane: Pane,
    pub doctors: DoctorsPane,
    pub calendar: CalendarPane,
    pub bookings: BookingsPane,
    pub mailbox: MailboxPane,
    pub reports: ReportsPane,
    pub otp: OtpPane,
    pub ledger: LedgerView,
    pub transfer: Option<Transfer>,
    /// Counts transfers, so progress of an older one is ignored.
    pub transfer_seq: u64,
    pub report_settings: ReportSettings,
    /// Ledger syncs write the saved head: one at a time.
    pub ledger_lock: Arc<tokio::sync::Mutex<()>>,
    /// Rises with every login and lock: answers for an older session are dropped.
    pub epoch: u64,
    pub help_scroll: u16,
    /// The pane whose keys Help shows.
    pub help_for: Pane,
    pub popup: Option<Popup>,
    pub status: Status,
    pub idle_lock_minutes: u64,
    /// Set when the screen must be redrawn.
    pub dirty: bool,
    pub quit: bool,
    /// The terminal is below 80×24: nothing is drawn but the notice, so only quit and
    /// redraw act (no key may reach a popup the user cannot see).
    pub too_small: bool,
    /// Client settings for a new `ApiClient` (login, registration).
    pub client_template: Option<ApiClient>,
    /// The clinic's time zone, learned from the server's slot answers.
    pub tz: chrono_tz::Tz,
}

impl App {
    pub fn new(clock: Clock, theme: Theme, keys: KeyMap, server: ServerInfo) -> App {
        App {
            clock,
            theme,
            keys,
            server,
            seed: None,
            screen: Screen::Login,
            back_screen: Screen::Login,
            login: LoginForm::default(),
            register: RegisterForm::default(),
            recover: RecoverForm::default(),
            totp: TotpForm::default(),
            session: None,
            pane: Pane::Doctors,
            doctors: DoctorsPane::default(),
            calendar: CalendarPane::default(),
            bookings: BookingsPane::default(),
            mailbox: MailboxPane::default(),
            reports: ReportsPane::default(),
            otp: OtpPane::default(),
            ledger: LedgerView::default(),
            transfer: None,
            transfer_seq: 0,
            report_settings: ReportSettings::default(),
            ledger_lock: Arc::new(tokio::sync::Mutex::new(())),
            epoch: 0,
            help_scroll: 0,
            help_for: Pane::Doctors,
            popup: None,
            status: Status::default(),
            idle_lock_minutes: 10,
            dirty: true,
            quit: false,
            too_small: false,
            client_template: None,
            tz: chrono_tz::UTC,
        }
    }

    pub fn role(&self) -> Option<Role> {
        self.session.as_ref().map(|s| s.user.role)
    }

    /// Panes this user sees, in Tab order.
    pub fn panes(&self) -> Vec<Pane> {
        match self.role() {
            Some(role) => Pane::ALL
                .into_iter()
                .filter(|p| p.available(role, self.server.demo))
                .collect(),
            None => vec![],
        }
    }

    /// Whether a text field has the keys (letters and digits then type, not command).
    /// The `/` filter of the pane shown, for the lists that have one.
    pub fn list_filter(&self) -> Option<&ListFilter> {
        match self.pane {
            Pane::Bookings => Some(&self.bookings.filter),
            Pane::Reports => Some(&self.reports.filter),
            Pane::Ledger => Some(&self.ledger.filter),
            Pane::Otp => Some(&self.otp.filter),
            Pane::Mailbox => Some(&self.mailbox.filter),
            _ => None,
        }
    }

    pub fn list_filter_mut(&mut self) -> Option<&mut ListFilter> {
        match self.pane {
            Pane::Bookings => Some(&mut self.bookings.filter),
            Pane::Reports => Some(&mut self.reports.filter),
            Pane::Ledger => Some(&mut self.ledger.filter),
            Pane::Otp => Some(&mut self.otp.filter),
            Pane::Mailbox => Some(&mut self.mailbox.filter),
            _ => None,
        }
    }

    /// After the filter's words changed: recompute the pane's list, keep the selection in it.
    pub fn refilter(&mut self) {
        let tz = self.tz;
        match self.pane {
            Pane::Bookings => self.bookings.refilter(tz),
            Pane::Otp => self.otp.refilter(tz),
            Pane::Mailbox => self.mailbox.refilter(),
            Pane::Reports => {
                let n = self.reports.visible(tz).len();
                self.reports.selected = self.reports.selected.min(n.saturating_sub(1));
            }
            Pane::Ledger => {
                let n = self.ledger.shown().len();
                self.ledger.selected = self.ledger.selected.min(n.saturating_sub(1));
            }
            _ => {}
        }
    }

    /// Rows in the pane's list as shown (for moving the selection).
    pub fn list_len(&self) -> usize {
        match self.pane {
            Pane::Bookings => self.bookings.items.len(),
            Pane::Otp => self.otp.items.len(),
            Pane::Mailbox => self.mailbox.items.len(),
            Pane::Reports => self.reports.visible(self.tz).len(),
            Pane::Ledger => self.ledger.shown().len(),
            _ => 0,
        }
    }

    pub fn list_selected_mut(&mut self) -> Option<&mut usize> {
        match self.pane {
            Pane::Bookings => Some(&mut self.bookings.selected),
            Pane::Otp => Some(&mut self.otp.selected),
            Pane::Mailbox => Some(&mut self.mailbox.selected),
            Pane::Reports => Some(&mut self.reports.selected),
            Pane::Ledger => Some(&mut self.ledger.selected),
            _ => None,
        }
    }

    pub fn text_focus(&self) -> bool {
        match self.screen {
            Screen::Login | Screen::Register | Screen::Recover | Screen::Totp => true,
            Screen::Mailbox => false,
            Screen::Main => {
                matches!(
                    self.popup,
                    Some(Popup::PickPatient(_))
                        | Some(Popup::PickDoctor(_))
                        | Some(Popup::Palette(_))
                        | Some(Popup::Path(_))
                        | Some(Popup::Password(_))
                ) || matches!(&self.popup, Some(Popup::BreakGlass(b)) if !b.confirming)
                    || matches!(&self.popup, Some(Popup::RecoveryKit(k)) if k.code.is_none())
                    || (self.popup.is_none()
                        && ((self.pane == Pane::Doctors && self.doctors.editing)
                            || self.list_filter().is_some_and(|f| f.focused)
                            || (self.pane == Pane::Otp && self.otp.editing)))
            }
        }
    }

    /// The selected day's rows in the calendar, in time order.
    pub fn day_rows(&self) -> Vec<DayRow> {
        let (Some(day), Some(data)) = (self.calendar.selected, &self.calendar.data) else {
            return vec![];
        };
        let tz = self.tz;
        let mut rows: Vec<DayRow> = data
            .slots
            .iter()
            .filter(|s| s.start.with_timezone(&tz).date_naive() == day)
            .cloned()
            .map(DayRow::Free)
            .collect();
        rows.extend(
            data.bookings
                .iter()
                .filter(|b| b.status != crate::api::BookingStatus::Cancelled)
                .filter(|b| b.start.with_timezone(&tz).date_naive() == day)
                .cloned()
                .map(DayRow::Booked),
        );
        rows.sort_by_key(|r| r.start());
        rows
    }

    /// Free slots per local day of the loaded month.
    pub fn free_per_day(&self) -> std::collections::HashMap<NaiveDate, usize> {
        let mut m = std::collections::HashMap::new();
        if let Some(data) = &self.calendar.data {
            for s in &data.slots {
                *m.entry(s.start.with_timezone(&self.tz).date_naive())
                    .or_insert(0) += 1;
            }
        }
        m
    }

    /// `Mon 2026-12-01 09:00` in the clinic's zone.
    pub fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .format("%a %Y-%m-%d %H:%M")
            .to_string()
    }
}

// ---- Issue 16: break-glass (src/tui/update/emergency.rs, src/tui/view/emergency.rs) ----

/// Which field of the break-glass form has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakGlassField {
    Patient,
    Reason,
}

/// The break-glass form: the patient (id or exact email), the reason, then a loud y/n.
pub struct BreakGlass {
    pub patient: TextArea<'static>,
    pub reason: TextArea<'static>,
    pub focus: BreakGlassField,
    /// The form checked out: the confirmation is showing.
    pub confirming: bool,
    /// What is wrong with the form, or the server's refusal.
    pub message: Option<String>,
    /// Sent; waiting for the server.
    pub sending: bool,
}

impl BreakGlass {
    pub fn new() -> BreakGlass {
        BreakGlass {
            patient: text_field("the patient's id or exact email"),
            reason: text_field("why, 5 to 500 characters (mailed to the patient)"),
            focus: BreakGlassField::Patient,
            confirming: false,
            message: None,
            sending: false,
        }
    }
}

impl Default for BreakGlass {
    fn default() -> Self {
        Self::new()
    }
}

/// One selectable row of the break-glass list: a request, or one report it released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmergencyRow {
    pub request: usize,
    pub report: Option<Uuid>,
}

/// The break-glass requests the server shows the caller (a doctor: theirs; a patient: those
/// on them), newest first.
#[derive(Default)]
pub struct EmergencyView {
    pub requests: Vec<crate::api::emergency::EmergencyRequest>,
    pub selected: usize,
    pub loading: bool,
    /// A veto asked for this request, waiting for y/n.
    pub confirm_veto: Option<Uuid>,
    pub message: Option<String>,
}

impl EmergencyView {
    /// Requests, each followed by its reports once released (for the reader only).
    pub fn rows(&self, reader: bool) -> Vec<EmergencyRow> {
        let mut out = Vec::new();
        for (i, r) in self.requests.iter().enumerate() {
            out.push(EmergencyRow {
                request: i,
                report: None,
            });
            if reader && r.status == "released" {
                out.extend(r.report_ids.iter().map(|id| EmergencyRow {
                    request: i,
                    report: Some(*id),
                }));
            }
        }
        out
    }
}

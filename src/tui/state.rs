//! The whole client state. `view` draws from it alone; `update` is the only writer.

use std::path::PathBuf;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use ratatui_textarea::TextArea;
use uuid::Uuid;

use crate::api::{
    AvailabilityResponse, Booking, Doctor, PatientSummary, Role, Slot, UserInfo,
    VerifyEmailResponse,
};
use crate::client::ApiClient;
use crate::seal::UserSecrets;
use crate::tui::keymap::KeyMap;
use crate::tui::theme::Theme;

/// Panes, in Tab order. Reports, OTP and Ledger keep their digits (4–6) for the report layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    Doctors,
    Calendar,
    Bookings,
    Mailbox,
    Help,
}

impl Pane {
    pub const ALL: [Pane; 5] = [
        Pane::Doctors,
        Pane::Calendar,
        Pane::Bookings,
        Pane::Mailbox,
        Pane::Help,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Doctors => "Doctors",
            Pane::Calendar => "Calendar",
            Pane::Bookings => "Bookings",
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
    /// The outbox before logging in (demo mode), to read a registration code.
    Mailbox,
    Main,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginField {
    Email,
    Password,
    Register,
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
    pub password: TextArea<'static>,
    pub focus: LoginField,
    pub busy: bool,
    pub message: Option<String>,
    /// Set by the idle lock: the account to unlock.
    pub locked: Option<String>,
}

impl Default for LoginForm {
    fn default() -> Self {
        LoginForm {
            email: text_field("email"),
            password: password_field("password"),
            focus: LoginField::Email,
            busy: false,
            message: None,
            locked: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterField {
    Email,
    Name,
    Phone,
    Password,
    Code,
}

pub struct RegisterForm {
    pub email: TextArea<'static>,
    pub name: TextArea<'static>,
    pub phone: TextArea<'static>,
    pub password: TextArea<'static>,
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
            password: password_field("15+ characters, a passphrase"),
            code: text_field("6 digits from the mail"),
            focus: RegisterField::Email,
            verification: None,
            busy: false,
            message: None,
        }
    }
}

/// A logged-in user. Dropping it zeroizes the secret keys (`UserSecrets`).
pub struct Session {
    pub user: UserInfo,
    pub client: ApiClient,
    pub secrets: Option<UserSecrets>,
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

#[derive(Default)]
pub struct BookingsPane {
    pub request_id: u64,
    pub loading: bool,
    pub error: Option<String>,
    pub items: Vec<Booking>,
    pub selected: usize,
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
    pub items: Vec<Mail>,
    pub selected: usize,
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
}

pub struct Palette {
    pub input: TextArea<'static>,
    pub selected: usize,
}

pub enum Popup {
    Confirm(Pending),
    PickPatient(Box<PatientPicker>),
    Palette(Box<Palette>),
    /// Quit asked while requests run.
    ConfirmQuit,
}

impl Popup {
    pub fn palette() -> Popup {
        Popup::Palette(Box::new(Palette {
            input: text_field("command"),
            selected: 0,
        }))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub info: Option<String>,
    pub error: Option<String>,
    /// Requests in flight.
    pub busy: u32,
}

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
    pub session: Option<Session>,
    pub pane: Pane,
    pub doctors: DoctorsPane,
    pub calendar: CalendarPane,
    pub bookings: BookingsPane,
    pub mailbox: MailboxPane,
    pub help_scroll: u16,
    /// The pane whose keys Help shows.
    pub help_for: Pane,
    pub popup: Option<Popup>,
    pub status: Status,
    pub idle_lock_minutes: u64,
    /// Set when the screen must be redrawn.
    pub dirty: bool,
    pub quit: bool,
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
            session: None,
            pane: Pane::Doctors,
            doctors: DoctorsPane::default(),
            calendar: CalendarPane::default(),
            bookings: BookingsPane::default(),
            mailbox: MailboxPane::default(),
            help_scroll: 0,
            help_for: Pane::Doctors,
            popup: None,
            status: Status::default(),
            idle_lock_minutes: 10,
            dirty: true,
            quit: false,
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
    pub fn text_focus(&self) -> bool {
        match self.screen {
            Screen::Login | Screen::Register => true,
            Screen::Mailbox => false,
            Screen::Main => {
                matches!(
                    self.popup,
                    Some(Popup::PickPatient(_)) | Some(Popup::Palette(_))
                ) || (self.pane == Pane::Doctors && self.doctors.editing)
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

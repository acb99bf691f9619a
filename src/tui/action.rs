//! Everything that can happen to the state (`Action`) and everything `update` asks the loop to
//! do (`Effect`). Finished background jobs come back as actions carrying their request id.

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use ratatui::crossterm::event::KeyEvent;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::api::{BookRequest, Booking, PatientSummary, VerifyEmailResponse};
use crate::client::{ApiClient, LoggedIn};
use crate::tui::state::{CalendarData, DoctorRow, Mail, SeedProgress};

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
    /// The server ended the session (expired or revoked): lock, keep nothing.
    SessionEnded(String),
    /// A terminal signal (SIGTERM, SIGHUP): leave now.
    Terminate,
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
}

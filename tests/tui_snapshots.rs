//! Every pane and screen of the terminal client at 80×24 on ratatui's TestBackend, in the
//! 16-colour theme and in NO_COLOR mode, from hand-made state with a fixed clock (no date,
//! port or id of the run reaches a snapshot). The Debug form of the buffer holds the text and
//! every style run, so a colour or selection change shows up as a diff.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use uuid::Uuid;

use clinvault::api::{
    Availability, AvailabilityResponse, Booking, BookingStatus, Doctor, Grant, OtpPending,
    PatientSummary, ReportSummary, Role, Slot, UserInfo, WeeklyBlock,
};
use clinvault::client::ApiClient;
use clinvault::seal::{KdfParams, PublicKeys};
use clinvault::tui::action::Action;
use clinvault::tui::keymap::KeyMap;
use clinvault::tui::rate::RateMeter;
use clinvault::tui::state::{
    App, CalendarData, Check, Clock, DoctorRow, GrantsView, HeadInfo, LedgerLine, Mail, Pane,
    PathEntry, PathFor, PatientPicker, Pending, Popup, RegisterField, ReportRow, Screen,
    SeedProgress, ServerInfo, Session, Transfer, TransferKind, field_text, text_field,
};
use clinvault::tui::theme::Theme;
use clinvault::tui::update::update;
use clinvault::tui::view::render;
use clinvault::tui::viewer::{Body, Viewer, sanitize};

const KEYS: PublicKeys = PublicKeys {
    x25519: [7; 32],
    ed25519: [9; 32],
};

fn id(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0)
        .single()
        .expect("fixed time")
}

fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    // Europe/Berlin is UTC+1 in December.
    Utc.with_ymd_and_hms(2026, 12, day, h - 1, m, 0)
        .single()
        .expect("fixed time")
}

fn doctor(n: u8, name: &str, specialty: &str) -> Doctor {
    Doctor {
        id: id(n),
        name: name.into(),
        specialty: specialty.into(),
        bio: String::new(),
        public_keys: KEYS,
    }
}

fn slot(day: u32, h: u32, m: u32) -> Slot {
    let start = at(day, h, m);
    Slot {
        start,
        end: start + Duration::minutes(30),
        local_start: String::new(),
    }
}

fn booking(n: u8, day: u32, h: u32, status: BookingStatus) -> Booking {
    Booking {
        id: id(100 + n),
        doctor_id: id(1),
        doctor_name: "Dana Herz".into(),
        patient_id: id(50),
        patient_name: "Pat Jones".into(),
        start: at(day, h, 0),
        end: at(day, h, 30),
        status,
    }
}

fn app(color: bool, role: Option<Role>) -> App {
    let theme = if color {
        Theme::sixteen()
    } else {
        Theme::mono()
    };
    let mut app = App::new(
        Clock::fixed(now()),
        theme,
        KeyMap::default(),
        ServerInfo {
            url: "http://127.0.0.1:8440".into(),
            demo: true,
            data_dir: None,
        },
    );
    app.tz = chrono_tz::Europe::Berlin;
    if let Some(role) = role {
        let email = match role {
            Role::Patient => "pat.jones@patients.demo",
            Role::Doctor => "dana.herz@clinic.demo",
            _ => "desk@clinic.demo",
        };
        app.session = Some(Session {
            user: UserInfo {
                id: id(50),
                email: email.into(),
                name: "Someone".into(),
                role,
                active: true,
            },
            client: ApiClient::new("http://127.0.0.1:8440", false, KdfParams::default())
                .expect("client"),
            keys: None,
        });
        app.screen = Screen::Main;
    }
    app
}

fn with_doctors(app: &mut App) {
    app.doctors.rows = vec![
        DoctorRow {
            doctor: doctor(1, "Dana Herz", "Cardiology"),
            next_free: Some(slot(2, 9, 0)),
        },
        DoctorRow {
            doctor: doctor(2, "Omar Castillo", "Cardiology"),
            next_free: Some(slot(3, 14, 30)),
        },
        DoctorRow {
            doctor: doctor(3, "Mira Haut", "Dermatology"),
            next_free: None,
        },
    ];
    app.doctors.selected = 1;
}

fn with_calendar(app: &mut App) {
    let weekly = ["mon", "tue", "wed", "thu", "fri"]
        .iter()
        .map(|d| WeeklyBlock {
            weekday: d.to_string(),
            start: "09:00".into(),
            end: "12:00".into(),
            slot_minutes: 30,
        })
        .collect();
    app.calendar.doctor = Some(doctor(1, "Dana Herz", "Cardiology"));
    app.calendar.selected = Some(NaiveDate::from_ymd_opt(2026, 12, 2).expect("date"));
    app.calendar.data = Some(CalendarData {
        doctor: doctor(1, "Dana Herz", "Cardiology"),
        slots: vec![
            slot(2, 9, 0),
            slot(2, 9, 30),
            slot(2, 11, 0),
            slot(3, 10, 0),
            slot(7, 9, 0),
        ],
        bookings: vec![
            booking(1, 2, 10, BookingStatus::Booked),
            booking(2, 2, 10, BookingStatus::Cancelled),
        ],
        availability: Some(AvailabilityResponse {
            doctor_id: id(1),
            timezone: "Europe/Berlin".into(),
            availability: Availability {
                weekly,
                days_off: vec![NaiveDate::from_ymd_opt(2026, 12, 4).expect("date")],
            },
        }),
        timezone: "Europe/Berlin".into(),
        // What the slots answer names from today on: weekends and the day off (Dec 4).
        closed: (1..=31)
            .filter_map(|d| NaiveDate::from_ymd_opt(2026, 12, d))
            .filter(|d| *d >= app.clock.today)
            .filter(|d| d.weekday().num_days_from_monday() >= 5 || d.day() == 4)
            .collect(),
    });
    app.calendar.in_day = true;
    app.calendar.row = 2;
    app.pane = Pane::Calendar;
}

fn with_bookings(app: &mut App) {
    app.bookings.items = vec![
        booking(1, 2, 10, BookingStatus::Booked),
        booking(3, 1, 9, BookingStatus::CheckedIn),
        booking(4, 1, 11, BookingStatus::Completed),
        booking(5, 8, 9, BookingStatus::Cancelled),
    ];
    app.bookings.selected = 1;
    app.pane = Pane::Bookings;
}

/// A meter that saw the transfer start at `from` and reach `done` now.
fn seen(from: DateTime<Utc>, done: u64) -> RateMeter {
    let mut m = RateMeter::default();
    m.record(from, 0);
    m.record(now(), done);
    m
}

fn draw(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| render(app, f)).expect("draw");
    format!("{:?}", t.backend().buffer())
}

fn key(app: &mut App, code: KeyCode) {
    let _ = update(app, Action::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

/// Both themes of one screen: `NAME_color` and `NAME_mono`.
fn snap(name: &str, make: impl Fn(bool) -> App) {
    for (color, suffix) in [(true, "color"), (false, "mono")] {
        let app = make(color);
        let text = draw(&app, 80, 24);
        assert!(!text.contains("2026-11"), "no run-dependent dates leak in");
        insta::assert_snapshot!(format!("{name}_{suffix}"), text);
    }
}

#[test]
fn login_demo_seeding() {
    snap("login_demo_seeding", |c| {
        let mut a = app(c, None);
        a.seed = Some(SeedProgress {
            done: 5,
            total: 20,
            step: "doctor omar.castillo@clinic.demo".into(),
            finished: false,
            error: None,
        });
        a.login.email.insert_str("pat.jones@patients.demo");
        key(&mut a, KeyCode::Tab);
        for ch in "secret".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        a
    });
}

#[test]
fn login_locked() {
    snap("login_locked", |c| {
        let mut a = app(c, Some(Role::Patient));
        a.server.demo = false;
        let _ = update(&mut a, Action::IdleLock);
        let text = draw(&a, 80, 24);
        assert!(
            !text.contains(clinvault::tui::demo::DEMO_PASSWORD),
            "demo password in demo mode only"
        );
        a
    });
}

#[test]
fn mailbox_before_login() {
    snap("mailbox_before_login", |c| {
        let mut a = app(c, None);
        a.screen = Screen::Register;
        a.mailbox.items = vec![Mail {
            file: "c.eml".into(),
            date: "Tue, 01 Dec 2026 08:00:00 +0000".into(),
            to: "new@example.org".into(),
            subject: "Your clinvault registration code".into(),
            body: "Your clinvault registration code is:\n\n    123456".into(),
        }];
        let _ = update(
            &mut a,
            Action::Key(KeyEvent::new(KeyCode::Char('o'), KeyModifiers::CONTROL)),
        );
        assert_eq!(a.screen, Screen::Mailbox);
        a.mailbox.loading = false;
        a
    });
}

#[test]
fn quit_while_busy_asks() {
    snap("quit_confirm", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_bookings(&mut a);
        a.status.busy = 2;
        key(&mut a, KeyCode::Char('q'));
        assert!(!a.quit);
        a
    });
}

#[test]
fn register_with_code() {
    snap("register_with_code", |c| {
        let mut a = app(c, None);
        a.screen = Screen::Register;
        a.register.email.insert_str("new@example.org");
        a.register.name.insert_str("Nia New");
        a.register.password.insert_str("a long passphrase here");
        a.register.confirm.insert_str("a long passphrase here");
        a.register.verification = Some(clinvault::api::VerifyEmailResponse {
            verification_id: id(9),
            expires_at: now(),
            kdf: KdfParams::default(),
        });
        a.register.focus = RegisterField::Code;
        a.register.code.insert_str("123");
        a.register.message = Some("A code was mailed. Demo: Ctrl-O opens the mailbox.".into());
        a
    });
}

#[test]
fn doctors_pane() {
    snap("doctors", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_doctors(&mut a);
        a.doctors.editing = true;
        a.doctors.query.insert_str("cardio");
        a
    });
}

#[test]
fn calendar_pane() {
    snap("calendar", |c| {
        let mut a = app(c, Some(Role::Reception));
        with_calendar(&mut a);
        a
    });
}

/// #14 point 15: a patient, who may not read the doctor's availability, sees "off" on the
/// same days as staff, from the slots answer.
#[test]
fn calendar_pane_patient() {
    snap("calendar_patient", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_calendar(&mut a);
        if let Some(d) = &mut a.calendar.data {
            d.availability = None;
        }
        a.calendar.in_day = false;
        a
    });
}

#[test]
fn calendar_confirm_booking() {
    snap("calendar_confirm", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_calendar(&mut a);
        a.popup = Some(Popup::Confirm(Pending::Book {
            doctor_id: id(1),
            doctor_name: "Dana Herz".into(),
            slot: slot(2, 11, 0),
            patient: None,
        }));
        a
    });
}

#[test]
fn calendar_pick_patient() {
    snap("calendar_pick_patient", |c| {
        let mut a = app(c, Some(Role::Reception));
        with_calendar(&mut a);
        let mut query = text_field("patient name, email or phone");
        query.insert_str("jo");
        a.popup = Some(Popup::PickPatient(Box::new(PatientPicker {
            query,
            request_id: 1,
            results: vec![
                PatientSummary {
                    id: id(50),
                    name: "Pat Jones".into(),
                    email: "pat.jones@patients.demo".into(),
                    phone: String::new(),
                },
                PatientSummary {
                    id: id(51),
                    name: "Jon Smith".into(),
                    email: "jon.smith@patients.demo".into(),
                    phone: String::new(),
                },
            ],
            selected: 1,
            error: None,
            doctor_id: id(1),
            doctor_name: "Dana Herz".into(),
            slot: slot(2, 11, 0),
            choose_doctor: false,
        })));
        a
    });
}

#[test]
fn bookings_pane() {
    snap("bookings", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_bookings(&mut a);
        a.status.error = Some("cannot complete a booking that is booked (invalid_status)".into());
        a
    });
}

#[test]
fn mailbox_pane() {
    snap("mailbox", |c| {
        let mut a = app(c, Some(Role::Patient));
        a.mailbox.items = vec![
            Mail {
                file: "b.eml".into(),
                date: "Tue, 01 Dec 2026 08:00:00 +0000".into(),
                to: "pat.jones@patients.demo".into(),
                subject: "Your clinvault code".into(),
                body: "Your code:\n\n    123456\n\nIt expires in 10 minutes.".into(),
            },
            Mail {
                file: "a.eml".into(),
                date: "Tue, 01 Dec 2026 07:00:00 +0000".into(),
                to: "dana.herz@clinic.demo".into(),
                subject: "You are invited".into(),
                body: "Code".into(),
            },
        ];
        a.pane = Pane::Mailbox;
        a
    });
}

#[test]
fn issue14_17_mailbox_body_scrolls() {
    // A mail longer than its pane: PgDn scrolls the body, j picks another mail (and starts
    // at its top again).
    snap("mailbox_scrolled", |c| {
        let mut a = app(c, Some(Role::Patient));
        let body: String = (1..=30)
            .map(|n| format!("line {n} of a long mail\n"))
            .collect();
        a.mailbox.items = vec![
            Mail {
                file: "b.eml".into(),
                date: "Tue, 01 Dec 2026 08:00:00 +0000".into(),
                to: "pat.jones@patients.demo".into(),
                subject: "A long mail".into(),
                body,
            },
            Mail {
                file: "a.eml".into(),
                date: "Tue, 01 Dec 2026 07:00:00 +0000".into(),
                to: "pat.jones@patients.demo".into(),
                subject: "Short".into(),
                body: "Code".into(),
            },
        ];
        a.pane = Pane::Mailbox;
        key(&mut a, KeyCode::PageDown);
        assert_eq!(a.mailbox.body_scroll, 8);
        assert_eq!(a.mailbox.selected, 0, "the mail stays selected");
        key(&mut a, KeyCode::Char('j'));
        assert_eq!(a.mailbox.body_scroll, 0);
        key(&mut a, KeyCode::Char('k'));
        key(&mut a, KeyCode::PageDown);
        key(&mut a, KeyCode::PageDown);
        assert_eq!(a.mailbox.body_scroll, 16);
        a
    });
}

#[test]
fn help_pane() {
    snap("help", |c| {
        let mut a = app(c, Some(Role::Reception));
        a.pane = Pane::Calendar;
        key(&mut a, KeyCode::Char('?'));
        assert_eq!(a.pane, Pane::Help);
        a
    });
}

#[test]
fn palette_popup() {
    snap("palette", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_doctors(&mut a);
        key(&mut a, KeyCode::Char(':'));
        for ch in "pane".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        a
    });
}

#[test]
fn doctors_list_and_sizes_below_80x24() {
    snap("doctors_not_typing", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_doctors(&mut a);
        a
    });
    // Below 80×24 a clear message, and no size panics.
    for c in [true, false] {
        let mut a = app(c, Some(Role::Patient));
        with_bookings(&mut a);
        let text = draw(&a, 79, 24);
        assert!(text.contains("terminal too small"), "{text}");
        let theme = if c { "color" } else { "mono" };
        insta::assert_snapshot!(format!("too_small_60x20_{theme}"), draw(&a, 60, 20));
        for (w, h) in [(0, 0), (1, 1), (10, 3), (80, 23)] {
            let _ = draw(&a, w, h);
        }
    }
}

fn report(n: u8, status: &str, readable: bool, size: u64) -> ReportSummary {
    ReportSummary {
        id: id(150 + n),
        author_id: id(1),
        author_name: "Dana Herz".into(),
        patient_id: id(50),
        patient_name: "Pat Jones".into(),
        created_at: at(1, 9 + u32::from(n), 15),
        plaintext_len: size,
        n_chunks: 1,
        status: status.into(),
        readable,
    }
}

fn head() -> HeadInfo {
    HeadInfo {
        tree_size: 42,
        root: "3f9a0c5e71b2d8aa".into(),
        time_ms: at(1, 8, 59).timestamp_millis(),
        key: "clinvault-ledger:Q2xpbnZhdWx0IGRlbW8gbGVkZ2VyIGtleSAwMTIzNDU2Nzg=".into(),
        pinned_now: false,
        cosigned_by: None,
    }
}

fn with_reports(a: &mut App) {
    a.reports.rows = vec![
        ReportRow {
            summary: report(4, "released", true, 48_213),
            check: Check::Verified {
                title: "Echocardiogram".into(),
            },
        },
        ReportRow {
            summary: report(3, "released", true, 3_100_000),
            check: Check::Failed("chunk 2: the chunk does not match its id (both replicas)".into()),
        },
        ReportRow {
            summary: report(2, "released", true, 912),
            check: Check::Opened {
                title: "Blood panel, December".into(),
            },
        },
        ReportRow {
            summary: report(1, "awaiting_release", false, 20_480),
            check: Check::Unchecked,
        },
    ];
    a.reports.selected = 1;
    a.ledger.head = Some(head());
    a.pane = Pane::Reports;
}

#[test]
fn reports_pane_with_a_failed_check_and_a_download() {
    snap("reports", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_reports(&mut a);
        a.transfer = Some(Transfer {
            id: 1,
            kind: TransferKind::Download,
            label: "Echocardiogram".into(),
            done: 1_228_800,
            total: 3_100_000,
            started: now() - Duration::seconds(4),
            cancel: Default::default(),
            meter: seen(now() - Duration::seconds(4), 1_228_800),
        });
        a
    });
}

#[test]
fn reports_stop_transfer_asks() {
    snap("reports_stop", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_reports(&mut a);
        a.transfer = Some(Transfer {
            id: 1,
            kind: TransferKind::Upload,
            label: "scan.pdf → Pat Jones".into(),
            done: 512_000,
            total: 2_048_000,
            started: now() - Duration::seconds(2),
            cancel: Default::default(),
            meter: seen(now() - Duration::seconds(2), 512_000),
        });
        key(&mut a, KeyCode::Esc);
        assert!(
            matches!(a.popup, Some(Popup::Confirm(Pending::StopTransfer))),
            "Esc asks, never stops"
        );
        a
    });
}

#[test]
fn reports_upload_path_entry() {
    snap("reports_upload_path", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_reports(&mut a);
        let mut input = text_field("path of the file to upload");
        input.insert_str("~/scans/echo-2026-12-01.pdf");
        a.popup = Some(Popup::Path(Box::new(PathEntry {
            purpose: PathFor::Upload {
                patient: id(50),
                name: "Pat Jones".into(),
            },
            input,
        })));
        a
    });
}

#[test]
fn reports_upload_title_and_a_stopped_upload() {
    // #14 point 13: the title is asked (the file's stem offered); a stopped upload's row
    // shows its file name.
    snap("reports_upload_title", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_reports(&mut a);
        a.reports.rows[3].summary.status = "open".into();
        a.reports.stopped.insert(
            a.reports.rows[3].summary.patient_id,
            "echo-2026-12-01.pdf".into(),
        );
        a.reports.selected = 3;
        let mut input = text_field("title");
        input.insert_str("echo-2026-12-01");
        a.popup = Some(Popup::Path(Box::new(PathEntry {
            purpose: PathFor::UploadTitle {
                patient: id(50),
                name: "Pat Jones".into(),
                path: "/home/dana/scans/echo-2026-12-01.pdf".into(),
            },
            input,
        })));
        a
    });
}

#[test]
fn reports_grants_of_a_report() {
    snap("reports_grants", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_reports(&mut a);
        let grant = |n: u8, name: &str, status: &str| Grant {
            id: id(200 + n),
            report_id: id(154),
            reader_id: id(10 + n),
            reader_name: name.into(),
            patient_id: id(50),
            author_id: id(1),
            status: status.into(),
            created_at: at(1, 8, 30),
            expires_at: at(8, 8, 30),
            approved_at: None,
            approval_index: None,
            approval_entry: None,
            consent_signature: None,
            request_id: None,
        };
        a.popup = Some(Popup::Grants(Box::new(GrantsView {
            report: id(154),
            loading: false,
            error: None,
            items: vec![
                grant(1, "James Wilson", "requested"),
                grant(2, "Mira Haut", "wrapped"),
            ],
            selected: 0,
        })));
        a
    });
}

fn viewer(body: Body, kind: &'static str, file: &str, len: u64) -> Popup {
    Popup::Viewer(Box::new(Viewer {
        origin: None,
        report: id(154),
        title: "Echocardiogram".into(),
        file_name: file.into(),
        kind,
        len,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        body,
        scroll: 2,
    }))
}

#[test]
fn reports_viewer_markdown_with_hostile_bytes() {
    // A report that tries to clear the screen, set the title and reverse the text: all of it
    // reaches the screen as visible escapes.
    let doc = "# Echocardiogram\n\nPatient: Pat Jones\nDate: 2026-12-01\n\n## Findings\n\n\
        - Left ventricle: normal size, EF 60 %\n- Valves:\tno regurgitation\n\
        - \u{1b}[2J\u{1b}]0;owned\u{7}\u{202e}evil\n\n## Conclusion\n\nNormal study. A \
        line long enough to wrap at eighty columns, so that the viewer's wrapping shows in the \
        snapshot as well.\n";
    snap("reports_viewer", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_reports(&mut a);
        a.popup = Some(viewer(
            Body::Text {
                markdown: true,
                text: sanitize(doc),
            },
            "Markdown",
            "echo.md",
            doc.len() as u64,
        ));
        let text = draw(&a, 80, 24);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'));
        a
    });
}

#[test]
fn reports_viewer_pdf_summary() {
    snap("reports_viewer_pdf", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_reports(&mut a);
        let Popup::Viewer(mut v) = viewer(
            Body::Summary("PDFs are not shown as text."),
            "PDF document",
            "scan.pdf",
            3_100_000,
        ) else {
            unreachable!()
        };
        v.scroll = 0;
        a.popup = Some(Popup::Viewer(v));
        a
    });
}

#[test]
fn otp_pane_typing_a_code() {
    snap("otp", |c| {
        let mut a = app(c, Some(Role::Patient));
        a.otp.items = vec![
            OtpPending {
                request_id: id(60),
                purpose: "release".into(),
                report_id: id(151),
                grant_id: None,
                unlocks: "your report of 2026-12-01 by Dr Dana Herz".into(),
                expires_at: now() + Duration::seconds(14 * 60 + 5),
                tries_left: 5,
                asked_at: Some(now() - Duration::seconds(55)),
                report_size: Some(48_213),
            },
            // Same doctor, same day: told apart by the request id, the time and the size.
            OtpPending {
                request_id: id(62),
                purpose: "release".into(),
                report_id: id(153),
                grant_id: None,
                unlocks: "your report of 2026-12-01 by Dr Dana Herz".into(),
                expires_at: now() + Duration::seconds(9 * 60),
                tries_left: 4,
                asked_at: Some(now() - Duration::seconds(6 * 60)),
                report_size: Some(3_100_000),
            },
            OtpPending {
                request_id: id(61),
                purpose: "grant".into(),
                report_id: id(152),
                grant_id: Some(id(201)),
                unlocks: "James Wilson reads the report by Dana Herz".into(),
                expires_at: now() + Duration::seconds(30),
                tries_left: 1,
                asked_at: None,
                report_size: None,
            },
        ];
        a.pane = Pane::Otp;
        key(&mut a, KeyCode::Enter);
        assert!(a.otp.editing);
        for ch in "12x3".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        assert_eq!(field_text(&a.otp.code), "123", "digits only");
        a
    });
}

#[test]
fn ledger_pane() {
    snap("ledger", |c| {
        let mut a = app(c, Some(Role::Patient));
        a.ledger.head = Some(head());
        a.ledger.entries = vec![
            LedgerLine {
                index: 41,
                time_ms: at(1, 8, 58).timestamp_millis(),
                text: "report 97979797: key served to 0b0b0b0b".into(),
                report: Some(id(0x97)),
                ..Default::default()
            },
            LedgerLine {
                index: 37,
                time_ms: at(1, 8, 40).timestamp_millis(),
                text: "key of report 97979797 wrapped to 0b0b0b0b by you".into(),
                report: Some(id(0x97)),
                grant: Some(id(201)),
            },
            LedgerLine {
                index: 30,
                time_ms: at(1, 8, 20).timestamp_millis(),
                text: "code entered by you".into(),
                ..Default::default()
            },
        ];
        a.pane = Pane::Ledger;
        a
    });
}

#[test]
fn ledger_trail_of_one_report() {
    // `t` on the selected report in Reports: its entries only, Esc for all.
    snap("ledger_trail", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_reports(&mut a);
        a.reports.selected = 0;
        a.reports.rows[0].summary.id = id(0x97);
        key(&mut a, KeyCode::Char('t'));
        assert_eq!(a.pane, Pane::Ledger);
        // No keys in a hand-made session: the entries are filled in below.
        a.status.error = None;
        a.ledger.entries_loading = false;
        a.ledger.entries = vec![
            LedgerLine {
                index: 45,
                time_ms: at(1, 9, 5).timestamp_millis(),
                text: "grant c9c9c9c9 revoked".into(),
                grant: Some(id(201)),
                ..Default::default()
            },
            LedgerLine {
                index: 41,
                time_ms: at(1, 8, 58).timestamp_millis(),
                text: "report 97979797: key served to 0b0b0b0b".into(),
                report: Some(id(0x97)),
                ..Default::default()
            },
            LedgerLine {
                index: 39,
                time_ms: at(1, 8, 50).timestamp_millis(),
                text: "report 98989898 committed".into(),
                report: Some(id(0x98)),
                ..Default::default()
            },
            LedgerLine {
                index: 37,
                time_ms: at(1, 8, 40).timestamp_millis(),
                text: "key of report 97979797 wrapped to 0b0b0b0b by you".into(),
                report: Some(id(0x97)),
                grant: Some(id(201)),
            },
        ];
        assert_eq!(
            a.ledger.shown().len(),
            3,
            "the other report's entry is hidden"
        );
        a
    });
}

#[test]
fn ledger_failure_banner_blocks_report_actions() {
    snap("ledger_banner", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_reports(&mut a);
        a.ledger.failed = Some(
            "rollback: the server's ledger has 40 entries, fewer than the 42 this client verified before"
                .into(),
        );
        a.reports.selected = 0;
        let fx = update(
            &mut a,
            Action::Key(KeyEvent::new(KeyCode::Char('v'), KeyModifiers::NONE)),
        );
        assert!(fx.is_empty(), "no report work while the ledger is failed");
        assert!(a.status.error.as_deref().unwrap_or("").contains("Blocked"));
        a
    });
}

#[test]
fn help_for_the_reports_pane() {
    snap("help_reports", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_reports(&mut a);
        key(&mut a, KeyCode::Char('?'));
        assert_eq!(a.pane, Pane::Help);
        a
    });
}

// ---- Issue 14 ----

#[test]
fn issue14_5_a_long_error_wraps_above_the_status_bar() {
    snap("message_line_long_error", |c| {
        let mut a = app(c, Some(Role::Reception));
        with_bookings(&mut a);
        let _ = update(&mut a, Action::BookingChanged(Err(
            "wrong state: the booking was cancelled by someone else at 09:12 while you were looking at it; reload with r to see the current list".into(),
        )));
        a
    });
}

#[test]
fn issue14_5_message_history_with_times() {
    snap("message_history", |c| {
        let mut a = app(c, Some(Role::Reception));
        with_bookings(&mut a);
        let _ = update(
            &mut a,
            Action::BookingChanged(Err("the server said no".into())),
        );
        a.clock = Clock::fixed(now() + Duration::seconds(75));
        let _ = update(&mut a, Action::Booked(Err("slot already taken".into())));
        key(&mut a, KeyCode::Char(':'));
        for ch in "messages".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        key(&mut a, KeyCode::Enter);
        assert!(matches!(a.popup, Some(Popup::Messages(0))));
        a
    });
    // A message does not follow the user to another pane.
    let mut a = app(false, Some(Role::Reception));
    with_bookings(&mut a);
    let _ = update(&mut a, Action::Booked(Err("slot already taken".into())));
    key(&mut a, KeyCode::Char('1'));
    assert!(a.status.error.is_none());
    assert_eq!(a.status.history.len(), 1, "but stays in the history");
}

#[test]
fn issue14_16_hints_true_to_context() {
    // No codes: no Enter or R offered.
    snap("otp_empty", |c| {
        let mut a = app(c, Some(Role::Patient));
        a.pane = Pane::Otp;
        a
    });
    // Admin has no Calendar pane: Enter does not offer one.
    snap("admin_doctors", |c| {
        let mut a = app(c, Some(Role::Admin));
        with_doctors(&mut a);
        a.pane = Pane::Doctors;
        a
    });
    // Help of Doctors: page keys without "next week".
    snap("help_doctors", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_doctors(&mut a);
        key(&mut a, KeyCode::Char('?'));
        a
    });
}

#[test]
fn issue14_17_plural_and_ledger_in_the_status_bar() {
    snap("login_locked_one_minute", |c| {
        let mut a = app(c, Some(Role::Reception));
        a.idle_lock_minutes = 1;
        let _ = update(&mut a, Action::IdleLock);
        a
    });
    snap("reception_status_bar_ledger", |c| {
        let mut a = app(c, Some(Role::Reception));
        with_bookings(&mut a);
        a.ledger.head = Some(head());
        a
    });
}

#[test]
fn issue14_13_progress_line_fits_and_sizes_are_binary() {
    snap("upload_progress_long_name", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_reports(&mut a);
        a.transfer = Some(Transfer {
            id: 1,
            kind: TransferKind::Upload,
            label: "cardiac-mri-2026-full-resolution-series.dcm → Pat Jones".into(),
            done: 29_999_999,
            total: 31_457_280,
            started: now() - Duration::seconds(754),
            cancel: Default::default(),
            meter: seen(now() - Duration::seconds(754), 29_999_999),
        });
        a
    });
    let mut a = app(false, Some(Role::Doctor));
    with_reports(&mut a);
    a.transfer = Some(Transfer {
        id: 1,
        kind: TransferKind::Upload,
        label: "x".repeat(80),
        done: 999_999_999,
        total: 1_073_741_824,
        started: now() - Duration::seconds(1),
        cancel: Default::default(),
        meter: seen(now() - Duration::seconds(1), 999_999_999),
    });
    let text = draw(&a, 80, 24);
    assert!(text.contains(" stop"), "the stop key is not cut off");
    assert!(text.contains("GiB"), "binary units say so");
}

/// #13 point 9 (the terminal's part): a transfer that stopped getting bytes says "stalled"
/// and no time left, instead of its old rate; bytes again bring a rate back.
#[test]
fn progress_line_says_stalled_then_recovers() {
    let mut a = app(false, Some(Role::Doctor));
    with_reports(&mut a);
    let mut meter = RateMeter::default();
    // 256 KB a second for ten seconds, then nothing for twenty.
    for i in 0..=10 {
        meter.record(now() - Duration::seconds(30 - i), i as u64 * 256_000);
    }
    a.transfer = Some(Transfer {
        id: 1,
        kind: TransferKind::Upload,
        label: "scan.pdf → Pat Jones".into(),
        done: 2_560_000,
        total: 10_240_000,
        started: now() - Duration::seconds(30),
        cancel: Default::default(),
        meter,
    });
    let text = draw(&a, 80, 24);
    let line = text
        .lines()
        .find(|l| l.contains("scan.pdf"))
        .expect("the progress line");
    assert!(line.contains("stalled · — ·"), "{line}");
    if let Some(t) = &mut a.transfer {
        t.meter.record(now(), 2_816_000);
        t.done = 2_816_000;
    }
    let text = draw(&a, 80, 24);
    let line = text
        .lines()
        .find(|l| l.contains("scan.pdf"))
        .expect("the progress line");
    assert!(
        !line.contains("stalled") && line.contains("/s") && line.contains(" left"),
        "{line}"
    );
}

#[test]
fn issue15_password_change_popup() {
    snap("password_change", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_bookings(&mut a);
        key(&mut a, KeyCode::Char('P'));
        for ch in "old secret words".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        key(&mut a, KeyCode::Enter);
        for ch in "a brand new long passphrase".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        key(&mut a, KeyCode::Enter);
        for ch in "a brand new long passphrasX".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        key(&mut a, KeyCode::Enter);
        let text = draw(&a, 80, 24);
        assert!(text.contains("The two new passwords differ."));
        assert!(!text.contains("passphrase") && !text.contains("secret words"));
        assert!(matches!(a.popup, Some(Popup::Password(_))), "still open");
        a
    });
}

/// Matching new passwords send the change once; the popup closes and its fields go with it.
#[test]
fn issue15_password_change_sends_once() {
    let mut a = app(false, Some(Role::Patient));
    key(&mut a, KeyCode::Char('P'));
    let mut fx = Vec::new();
    for (text, last) in [
        ("old secret words", false),
        ("a brand new long passphrase", false),
        ("a brand new long passphrase", true),
    ] {
        for ch in text.chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        fx = update(
            &mut a,
            Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        );
        assert_eq!(fx.is_empty(), !last);
    }
    assert!(matches!(
        fx.as_slice(),
        [clinvault::tui::action::Effect::ChangePassword { current, new, .. }]
            if current.as_str() == "old secret words" && new.as_str() == "a brand new long passphrase"
    ));
    assert!(a.popup.is_none());
    let _ = update(
        &mut a,
        Action::PasswordChanged(Err("wrong email or password".into())),
    );
    assert!(
        a.status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not changed"))
    );
}

#[test]
fn issue15_recovery_kit_popup() {
    snap("recovery_kit_password", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_bookings(&mut a);
        key(&mut a, KeyCode::Char('K'));
        for ch in "my password".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        a
    });
    snap("recovery_kit_code", |c| {
        let mut a = app(c, Some(Role::Patient));
        with_bookings(&mut a);
        key(&mut a, KeyCode::Char('K'));
        for ch in "my password".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        let fx = update(
            &mut a,
            Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        );
        assert!(matches!(
            fx.as_slice(),
            [clinvault::tui::action::Effect::MakeKit { password, .. }] if password.as_str() == "my password"
        ));
        // While it is made, Esc does not close it: the new code must be seen.
        key(&mut a, KeyCode::Esc);
        assert!(matches!(a.popup, Some(Popup::RecoveryKit(_))));
        let _ = update(
            &mut a,
            Action::KitMade(Ok(zeroize::Zeroizing::new(
                "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23-4567-ABCD".to_string(),
            ))),
        );
        a
    });
    // Shown, then closed: the code is gone from the state.
    let mut a = app(false, Some(Role::Patient));
    let _ = update(
        &mut a,
        Action::KitMade(Ok(zeroize::Zeroizing::new("WXYZ-CODE".to_string()))),
    );
    assert!(
        draw(&a, 80, 24).contains("WXYZ-CODE"),
        "shown even if closed"
    );
    key(&mut a, KeyCode::Enter);
    assert!(a.popup.is_none());
}

#[test]
fn issue15_recover_screen() {
    snap("recover", |c| {
        let mut a = app(c, None);
        a.login.email.insert_str("pat.jones@patients.demo");
        // Email → password → register → forgot: Enter opens the recovery screen.
        for _ in 0..3 {
            key(&mut a, KeyCode::Tab);
        }
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.screen, Screen::Recover);
        key(&mut a, KeyCode::Tab);
        for ch in "ABCD-EFGH".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        key(&mut a, KeyCode::Enter);
        for ch in "a new long passphrase".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        key(&mut a, KeyCode::Enter);
        for ch in "a new long passphrasx".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        key(&mut a, KeyCode::Enter);
        let text = draw(&a, 80, 24);
        assert!(text.contains("The two new passwords differ."));
        assert!(
            !text.contains("ABCD") && !text.contains("passphrase"),
            "all masked"
        );
        a
    });
}

/// Matching passwords send the recovery once; Esc before that forgets code and passwords.
#[test]
fn issue15_recover_sends_once() {
    let mut a = app(false, None);
    a.client_template =
        Some(ApiClient::new("http://127.0.0.1:8440", false, KdfParams::default()).expect("client"));
    a.screen = Screen::Recover;
    let mut fx = Vec::new();
    for text in [
        "pat@example.org",
        "ABCD-EFGH",
        "a new long passphrase",
        "a new long passphrase",
    ] {
        for ch in text.chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        fx = update(
            &mut a,
            Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
        );
    }
    assert!(matches!(
        fx.as_slice(),
        [clinvault::tui::action::Effect::Recover { email, code, new, .. }]
            if email == "pat@example.org" && code.as_str() == "ABCD-EFGH"
                && new.as_str() == "a new long passphrase"
    ));
    assert!(a.recover.busy && a.recover.code.is_empty() && a.recover.new.is_empty());
    // A refused code comes back as a message on this screen, not on the login.
    let _ = update(
        &mut a,
        Action::LoggedIn(Err("wrong email or recovery code".into())),
    );
    assert_eq!(a.screen, Screen::Recover);
    assert_eq!(
        a.recover.message.as_deref(),
        Some("wrong email or recovery code")
    );
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.screen, Screen::Login);
}

/// The hint line of a pane with many keys, at `w` columns.
fn hint_row(app: &App, w: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, 24)).expect("test terminal");
    t.draw(|f| render(app, f)).expect("draw");
    let buf = t.backend().buffer();
    (0..w)
        .map(|x| buf[(x, 22)].symbol().to_string())
        .collect::<String>()
        .trim_end()
        .to_string()
}

#[test]
fn hint_line_shows_whole_hints_only() {
    let mut a = app(false, Some(Role::Doctor));
    with_reports(&mut a);
    let wide = hint_row(&a, 200);
    let narrow = hint_row(&a, 80);
    assert!(
        wide.len() > narrow.len(),
        "the doctor's Reports pane has more hints than 80 columns hold: {wide:?}"
    );
    // Whole hints only (never "g gra"), in order, and the last one (Help's) kept.
    let hints =
        |line: &str| -> Vec<String> { line.split("  ").map(|h| h.trim().to_string()).collect() };
    let (all, shown) = (hints(&wide), hints(&narrow));
    let mut rest = all.iter();
    for h in &shown {
        assert!(
            rest.any(|w| w == h),
            "{h:?} is not a whole hint, in order: {narrow:?} / {wide:?}"
        );
    }
    assert_eq!(shown.last(), all.last(), "{narrow:?}");
    assert!(narrow.chars().count() <= 80);
}

// ---- issue 16: a station's report says who submitted it, for whom (list and viewer) ----

#[test]
fn reports_station_origin_in_list_and_viewer() {
    let origin = "submitted by station Lab-1 for Dr Dana Herz";
    snap("reports_station_origin", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_reports(&mut a);
        a.reports.selected = 0;
        a.reports.rows[0].summary.author_name = "Lab-1".into();
        a.reports.origins.insert(id(154), origin.into());
        assert!(draw(&a, 80, 24).contains(origin));
        a
    });
    snap("reports_viewer_station_origin", |c| {
        let mut a = app(c, Some(Role::Doctor));
        with_reports(&mut a);
        let Popup::Viewer(mut v) = viewer(
            Body::Summary("PDFs are not shown as text."),
            "PDF document",
            "scan.pdf",
            3_100_000,
        ) else {
            unreachable!()
        };
        v.origin = Some(origin.into());
        v.scroll = 0;
        a.popup = Some(Popup::Viewer(v));
        assert!(draw(&a, 80, 24).contains(origin));
        a
    });
}

// ---- Issue 15: TOTP second factor ----

const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn totp_enrolling(c: bool) -> App {
    let mut a = app(c, None);
    a.screen = Screen::Totp;
    a.totp.email = "dana.herz@clinic.demo".into();
    a.totp.enrolment = Some(clinvault::api::TotpEnrolment {
        secret_base32: TOTP_SECRET.into(),
        otpauth_uri: clinvault::server::routes::totp::otpauth_uri(
            "dana.herz@clinic.demo",
            TOTP_SECRET,
        ),
    });
    a
}

/// The enrolment screen at 80×24: the whole QR code (every row and column of it) beside the
/// secret and the code field.
#[test]
fn issue15_totp_enrolment_qr() {
    snap("totp_enrolment", |c| {
        let mut a = totp_enrolling(c);
        for ch in "1234".chars() {
            key(&mut a, KeyCode::Char(ch));
        }
        let mut t = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
        t.draw(|f| render(&a, f)).expect("draw");
        let buf = t.backend().buffer();
        let uri = a.totp.enrolment.as_ref().unwrap().otpauth_uri.clone();
        let qr = clinvault::client::totp::qr_lines(&uri, 22).unwrap();
        assert_eq!(qr.len(), 21, "version 5, two-module quiet zone");
        for (i, line) in qr.iter().enumerate() {
            let drawn: String = (1..1 + line.chars().count() as u16)
                .map(|x| buf[(x, 1 + i as u16)].symbol().to_string())
                .collect();
            assert_eq!(&drawn, line, "QR row {i} drawn whole");
        }
        let text = draw(&a, 80, 24);
        assert!(text.contains("JBSW Y3DP EHPK 3PXP"), "the secret, grouped");
        assert!(!text.contains("1234"), "the code is masked");
        a
    });
}

#[test]
fn issue15_totp_code_step() {
    snap("totp_code_step", |c| {
        let mut a = app(c, None);
        a.screen = Screen::Totp;
        a.totp.email = "dana.herz@clinic.demo".into();
        key(&mut a, KeyCode::Char('9'));
        a.totp.message = Some("that code is not valid (totp_invalid)".into());
        a
    });
}

/// After an enrolment the recovery codes are shown once: Enter opens the session, and they
/// are not drawn again.
#[test]
fn issue15_totp_recovery_codes_shown_once() {
    let codes: Vec<String> = (0..10)
        .map(|i| format!("AAAA{i}-BBBBB-CCCCC-DDDDD"))
        .collect();
    let session = |a: &App| {
        let secrets = clinvault::seal::UserSecrets::generate().unwrap();
        let logged = clinvault::client::LoggedIn {
            login: clinvault::api::LoginResponse {
                token: "t".into(),
                user: UserInfo {
                    id: id(50),
                    email: "dana.herz@clinic.demo".into(),
                    name: "Dana Herz".into(),
                    role: Role::Doctor,
                    active: true,
                },
                public_keys: secrets.public(),
                bundle: vec![],
                idle_timeout_secs: 900,
                expires_at: now(),
                kdf_upgrade: None,
            },
            secrets,
            wrap_key: clinvault::seal::WrapKey([1; 32]),
        };
        let _ = a;
        (
            ApiClient::new("http://127.0.0.1:8440", false, KdfParams::default()).unwrap(),
            logged,
        )
    };
    snap("totp_recovery_codes", |c| {
        let mut a = totp_enrolling(c);
        let (client, logged) = session(&a);
        let _ = update(
            &mut a,
            Action::TotpLoggedIn(Ok(Box::new((client, logged, codes.clone())))),
        );
        assert_eq!(a.screen, Screen::Totp);
        a
    });
    let mut a = totp_enrolling(false);
    let (client, logged) = session(&a);
    let _ = update(
        &mut a,
        Action::TotpLoggedIn(Ok(Box::new((client, logged, codes.clone())))),
    );
    assert!(draw(&a, 80, 24).contains("AAAA3-BBBBB"));
    // Other keys do not move on past codes the user may not have stored yet.
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.screen, Screen::Totp);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.screen, Screen::Main);
    assert!(a.totp.recovery.is_none());
    assert!(!draw(&a, 80, 24).contains("AAAA3"));
}

/// The half blocks decode back to the `otpauth://` URI: read as pixels (a drawn half is
/// light, blank is dark) by a QR decoder, as a phone's camera would.
#[test]
fn issue15_totp_qr_decodes_to_the_uri() {
    for email in [
        "dana.herz@clinic.demo",
        "dr.konstantin.oberholzer-weiss@clinic.example",
    ] {
        let uri = clinvault::server::routes::totp::otpauth_uri(email, TOTP_SECRET);
        let lines = clinvault::client::totp::qr_lines(&uri, 22).unwrap();
        let w = lines[0].chars().count();
        let h = lines.len() * 2;
        // Each module as 4×4 pixels, with a white margin a phone would see around it.
        let (scale, margin) = (4usize, 8usize);
        let mut light = vec![vec![true; w]; h];
        for (row, line) in lines.iter().enumerate() {
            for (x, c) in line.chars().enumerate() {
                let (top, bottom) = match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected {other:?}"),
                };
                light[row * 2][x] = top;
                light[row * 2 + 1][x] = bottom;
            }
        }
        let pw = w * scale + 2 * margin;
        let ph = h * scale + 2 * margin;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(pw, ph, |x, y| {
            if x < margin || y < margin || x >= margin + w * scale || y >= margin + h * scale {
                return 255;
            }
            if light[(y - margin) / scale][(x - margin) / scale] {
                255
            } else {
                0
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "{email}: one QR code found");
        let (_, content) = grids[0].decode().expect("decodes");
        assert_eq!(content, uri);
    }
}

/// Issue 16: a break-glass row of the Ledger pane is drawn in the error style (red and bold;
/// bold in mono), the rows around it are not.
#[test]
fn issue16_break_glass_rows_are_red() {
    for color in [true, false] {
        let mut a = app(color, Some(Role::Patient));
        a.ledger.head = Some(head());
        // The first row is the selected one, drawn in the selection style.
        a.ledger.entries = vec![
            LedgerLine {
                index: 45,
                time_ms: at(1, 9, 5).timestamp_millis(),
                text: "report 97979797 committed".into(),
                ..Default::default()
            },
            LedgerLine {
                index: 44,
                time_ms: at(1, 9, 0).timestamp_millis(),
                text: format!(
                    "{} 0b0b0b0b → you: \"unconscious\"",
                    clinvault::tui::tasks::BREAK_GLASS
                ),
                ..Default::default()
            },
            LedgerLine {
                index: 30,
                time_ms: at(1, 8, 20).timestamp_millis(),
                text: "code entered by you".into(),
                ..Default::default()
            },
        ];
        a.pane = Pane::Ledger;
        let mut t = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
        t.draw(|f| render(&a, f)).expect("draw");
        let buf = t.backend().buffer();
        let style_of = |needle: &str| {
            (0..24u16)
                .find_map(|y| {
                    let row: String = (0..80u16).map(|x| buf[(x, y)].symbol()).collect();
                    let x = row.find(needle)?;
                    let x = row[..x].chars().count() as u16;
                    Some(buf[(x, y)].style())
                })
                .unwrap_or_else(|| panic!("{needle} not drawn"))
        };
        let red = style_of("BREAK-GLASS");
        let plain = style_of("code entered");
        assert!(red.add_modifier.contains(ratatui::style::Modifier::BOLD));
        assert!(!plain.add_modifier.contains(ratatui::style::Modifier::BOLD));
        if color {
            assert_eq!(red.fg, Some(ratatui::style::Color::Red));
        }
    }
}

// ---- Issue 16: break-glass ----

fn em_request(status: &str, reports: Vec<Uuid>) -> clinvault::api::emergency::EmergencyRequest {
    clinvault::api::emergency::EmergencyRequest {
        id: id(160),
        patient_id: id(50),
        patient_name: "Pat Jones".into(),
        reader_id: id(2),
        reader_name: "James Wilson".into(),
        reason: "unconscious in the ER, needs last month's ECG".into(),
        created_at: at(1, 8, 50),
        release_at: at(1, 9, 0),
        until: at(1, 10, 0),
        status: status.into(),
        report_ids: reports,
        ledger_index: 42,
        entry: vec![],
    }
}

fn type_text(a: &mut App, text: &str) {
    for ch in text.chars() {
        key(a, KeyCode::Char(ch));
    }
}

/// `B` on a doctor's Reports pane: the empty form, with the loud note.
#[test]
fn issue16_break_glass_empty() {
    snap("issue16_break_glass_empty", |c| {
        let mut a = app(c, Some(Role::Doctor));
        a.pane = Pane::Reports;
        key(&mut a, KeyCode::Char('B'));
        assert!(matches!(a.popup, Some(Popup::BreakGlass(_))));
        let text = draw(&a, 80, 24);
        assert!(text.contains("mailed at once to the patient"));
        a
    });
}

/// A reason under 5 characters: the form says so and sends nothing.
#[test]
fn issue16_break_glass_reason_too_short() {
    snap("issue16_break_glass_reason_too_short", |c| {
        let mut a = app(c, Some(Role::Doctor));
        a.pane = Pane::Reports;
        key(&mut a, KeyCode::Char('B'));
        type_text(&mut a, "pat.jones@patients.demo");
        key(&mut a, KeyCode::Tab);
        type_text(&mut a, "ecg");
        key(&mut a, KeyCode::Enter);
        let text = draw(&a, 80, 24);
        assert!(text.contains("too short (3 of at least 5"));
        a
    });
}

/// A good form: the loud confirmation before anything is sent.
#[test]
fn issue16_break_glass_confirmation() {
    snap("issue16_break_glass_confirmation", |c| {
        let mut a = app(c, Some(Role::Doctor));
        a.pane = Pane::Reports;
        key(&mut a, KeyCode::Char('B'));
        type_text(&mut a, "pat.jones@patients.demo");
        key(&mut a, KeyCode::Enter);
        type_text(&mut a, "unconscious in the ER, needs last month's ECG");
        key(&mut a, KeyCode::Enter);
        let Some(Popup::BreakGlass(b)) = &a.popup else {
            panic!("the form")
        };
        assert!(b.confirming && !b.sending);
        a
    });
}

/// The patient's view of a request during its wait, and the veto's confirmation.
#[test]
fn issue16_pending_and_veto() {
    let make = |c: bool| {
        let mut a = app(c, Some(Role::Patient));
        a.pane = Pane::Ledger;
        a.popup = Some(Popup::Emergencies(Box::new(
            clinvault::tui::state::EmergencyView {
                requests: vec![em_request("waiting", vec![id(154)])],
                ..Default::default()
            },
        )));
        a
    };
    snap("issue16_pending", |c| {
        let a = make(c);
        assert!(draw(&a, 80, 24).contains("released at 09:00 unless the patient vetoes"));
        a
    });
    snap("issue16_veto_confirm", |c| {
        let mut a = make(c);
        key(&mut a, KeyCode::Char('v'));
        assert!(draw(&a, 80, 24).contains("Veto this request?"));
        a
    });
    snap("issue16_vetoed", |c| {
        let mut a = make(c);
        let Some(Popup::Emergencies(v)) = &mut a.popup else {
            panic!("the list")
        };
        v.requests = vec![em_request("vetoed", vec![id(154)])];
        v.message =
            Some("Vetoed: Dr James Wilson's request is stopped; nothing was released.".into());
        a
    });
}

/// The doctor's list after a release: the request, then its reports to read.
#[test]
fn issue16_released_for_the_doctor() {
    snap("issue16_released", |c| {
        let mut a = app(c, Some(Role::Doctor));
        a.pane = Pane::Reports;
        a.popup = Some(Popup::Emergencies(Box::new(
            clinvault::tui::state::EmergencyView {
                requests: vec![em_request("released", vec![id(154), id(155)])],
                selected: 1,
                ..Default::default()
            },
        )));
        a
    });
}

/// After a failed ledger check, Enter on a released report reads nothing and says why.
#[test]
fn issue16_no_break_glass_read_after_a_ledger_failure() {
    let mut a = app(false, Some(Role::Doctor));
    a.pane = Pane::Reports;
    a.ledger.failed = Some("inconsistent head".into());
    a.popup = Some(Popup::Emergencies(Box::new(
        clinvault::tui::state::EmergencyView {
            requests: vec![em_request("released", vec![id(154)])],
            selected: 1,
            ..Default::default()
        },
    )));
    key(&mut a, KeyCode::Enter);
    let Some(Popup::Emergencies(v)) = &a.popup else {
        panic!("the list stays")
    };
    assert!(
        v.message
            .as_deref()
            .unwrap_or("")
            .contains("ledger check failed")
    );
    // And `B` does not open the form.
    a.popup = None;
    key(&mut a, KeyCode::Char('B'));
    assert!(a.popup.is_none());
}

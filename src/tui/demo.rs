//! Demo data for the embedded server, made through the real client API (Argon2 for every
//! account, invites for staff, mailed codes read from the file outbox), in the background.
//! Idempotent: a marker file in the data folder says it is done, and every step skips what
//! already exists, so an interrupted run completes on the next start.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{Datelike, Duration as Days, NaiveDate, Utc, Weekday};

use crate::api::{Availability, BookRequest, InviteRequest, Role, WeeklyBlock};
use crate::client::ledger::Ledger;
use crate::client::reports::{UploadOptions, upload};
use crate::client::{ApiClient, ClientError};
use crate::seal::KdfParams;
use crate::tui::state::SeedProgress;

/// Shown on the login screen in demo mode only.
pub const DEMO_PASSWORD: &str = "amber lantern quietly folds the map";
pub const ADMIN_EMAIL: &str = "admin@clinic.demo";
pub const RECEPTION_EMAIL: &str = "desk@clinic.demo";
pub const MARKER: &str = "demo-seeded";

pub const DEMO_LOGINS: &[(&str, &str)] = &[
    ("patient", "pat.jones@patients.demo"),
    ("doctor", "dana.herz@clinic.demo"),
    ("reception", RECEPTION_EMAIL),
    ("admin", ADMIN_EMAIL),
];

/// (name, specialty); the address is first.last@clinic.demo.
pub const DOCTORS: &[(&str, &str)] = &[
    ("Dana Herz", "Cardiology"),
    ("Omar Castillo", "Cardiology"),
    ("Mira Haut", "Dermatology"),
    ("Lars Berg", "Dermatology"),
    ("Ines Nerv", "Neurology"),
    ("Tomas Reed", "Neurology"),
    ("Clara Klein", "Paediatrics"),
    ("Felix Moreau", "Paediatrics"),
    ("Rui Costa", "Orthopaedics"),
    ("Helga Knoch", "Orthopaedics"),
    ("Sam Okafor", "General practice"),
    ("Nina Patel", "General practice"),
];

pub const PATIENTS: &[(&str, &str)] = &[
    ("Pat Jones", "pat.jones@patients.demo"),
    ("Lee Wong", "lee.wong@patients.demo"),
    ("Maria Rossi", "maria.rossi@patients.demo"),
    ("Jon Smith", "jon.smith@patients.demo"),
];

pub fn doctor_email(name: &str) -> String {
    format!("{}@clinic.demo", name.to_lowercase().replace(' ', "."))
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("no mail with a code for {0} in the outbox")]
    NoMail(String),
    #[error("this data folder has accounts, but not the demo's admin: not seeding")]
    Foreign,
    #[error("writing the marker: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo history: {0}")]
    History(String),
}

/// A weekly template that differs a little per doctor.
pub fn template(i: usize, today: NaiveDate) -> Availability {
    let days = ["mon", "tue", "wed", "thu", "fri"];
    let mut weekly = Vec::new();
    for (d, day) in days.iter().enumerate() {
        // Every doctor has one weekday off; which one depends on the doctor.
        if d == i % 5 && i % 3 == 2 {
            continue;
        }
        weekly.push(WeeklyBlock {
            weekday: day.to_string(),
            start: "09:00".into(),
            end: "12:00".into(),
            slot_minutes: if i.is_multiple_of(2) { 20 } else { 30 },
        });
        if (d + i).is_multiple_of(2) {
            weekly.push(WeeklyBlock {
                weekday: day.to_string(),
                start: "14:00".into(),
                end: "16:00".into(),
                slot_minutes: 30,
            });
        }
    }
    if i % 4 == 1 {
        weekly.push(WeeklyBlock {
            weekday: "sat".into(),
            start: "10:00".into(),
            end: "12:00".into(),
            slot_minutes: 30,
        });
    }
    // A day off in the coming weeks for every third doctor.
    let mut days_off = Vec::new();
    if i.is_multiple_of(3) {
        let mut d = today + Days::days(7 + i as i64);
        while matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            d += Days::days(1);
        }
        days_off.push(d);
    }
    Availability { weekly, days_off }
}

/// The newest mail to `to` in `outbox`, with a little patience for the writer.
async fn mail_to(outbox: &Path, to: &str) -> Result<String, SeedError> {
    for _ in 0..50 {
        if let Ok(mails) = crate::tui::tasks::read_outbox(outbox)
            && let Some(m) = mails.into_iter().find(|m| m.to.eq_ignore_ascii_case(to))
        {
            return Ok(m.body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(SeedError::NoMail(to.into()))
}

fn mails_to(outbox: &Path, to: &str) -> usize {
    crate::tui::tasks::read_outbox(outbox)
        .map(|m| m.iter().filter(|m| m.to.eq_ignore_ascii_case(to)).count())
        .unwrap_or(0)
}

/// The newest mail to `to` once there are more than `before`.
async fn mail_after(outbox: &Path, to: &str, before: usize) -> Result<String, SeedError> {
    for _ in 0..50 {
        if mails_to(outbox, to) > before {
            return mail_to(outbox, to).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(SeedError::NoMail(to.into()))
}

fn code_in(body: &str, invite: bool) -> Option<String> {
    body.lines().map(str::trim).find_map(|l| {
        let ok = if invite {
            l.len() == 23 && l.split('-').count() == 4 && !l.contains(' ')
        } else {
            l.len() == 6 && l.chars().all(|c| c.is_ascii_digit())
        };
        ok.then(|| l.to_string())
    })
}

pub struct Seeder {
    pub url: String,
    pub data: PathBuf,
    pub kdf_floor: KdfParams,
    pub admin_code: Option<String>,
    /// Visits are checked in on their day and completed once begun: the one completed visit
    /// is booked ahead, then moved to have begun just now. Without it, no completed visit.
    pub begin_now: Option<super::BeginNow>,
}

impl Seeder {
    fn client(&self) -> Result<ApiClient, ClientError> {
        ApiClient::new(&self.url, false, self.kdf_floor)
    }

    async fn login(&self, email: &str) -> Result<ApiClient, ClientError> {
        let mut c = self.client()?;
        c.login(email, DEMO_PASSWORD).await?;
        Ok(c)
    }

    /// Seeds, reporting each step through `progress`.
    pub async fn run(&self, progress: impl Fn(SeedProgress)) -> Result<(), SeedError> {
        let total = (1 + DOCTORS.len() + 1 + 1 + PATIENTS.len() + 1 + 1) as u32;
        let mut p = SeedProgress {
            done: 0,
            total,
            ..SeedProgress::default()
        };
        let marker = self.data.join(MARKER);
        if marker.exists() {
            p.done = total;
            p.finished = true;
            p.step = "ready".into();
            progress(p);
            return Ok(());
        }
        let outbox = self.data.join("outbox");
        let step = |p: &mut SeedProgress, what: String| {
            p.step = what;
            progress(p.clone());
        };
        step(&mut p, "admin account (Argon2)…".into());
        if let Some(code) = &self.admin_code {
            self.client()?
                .register_admin(code, ADMIN_EMAIL, "Ada Admin", DEMO_PASSWORD)
                .await?;
        }
        let admin = match self.login(ADMIN_EMAIL).await {
            Ok(c) => c,
            Err(_) if self.admin_code.is_none() => return Err(SeedError::Foreign),
            Err(e) => return Err(e.into()),
        };
        let mut existing = HashSet::new();
        for page in 1..=50 {
            let users = admin.users("", page).await?;
            let n = users.items.len();
            existing.extend(users.items.into_iter().map(|u| u.email));
            if n == 0 || existing.len() as u64 >= users.total {
                break;
            }
        }
        p.done += 1;
        let mut staff: Vec<(Role, String, String, String)> = DOCTORS
            .iter()
            .map(|(n, s)| (Role::Doctor, doctor_email(n), n.to_string(), s.to_string()))
            .collect();
        staff.push((
            Role::Reception,
            RECEPTION_EMAIL.into(),
            "Rita Empfang".into(),
            String::new(),
        ));
        for (role, email, name, specialty) in staff {
            step(&mut p, format!("{role} {email}"));
            if !existing.contains(&email) {
                admin
                    .invite(&InviteRequest {
                        role,
                        email: email.clone(),
                        name: name.clone(),
                        specialty: specialty.clone(),
                        bio: if specialty.is_empty() {
                            String::new()
                        } else {
                            format!("{name}, {specialty}.")
                        },
                    })
                    .await?;
                let body = mail_to(&outbox, &email).await?;
                let code = code_in(&body, true).ok_or_else(|| SeedError::NoMail(email.clone()))?;
                self.client()?.register_invite(&code, DEMO_PASSWORD).await?;
            }
            p.done += 1;
        }
        step(&mut p, "weekly availability".into());
        let today = Utc::now().date_naive();
        let doctors = admin.doctors("", "", 1).await?.items;
        for (i, (name, _)) in DOCTORS.iter().enumerate() {
            if let Some(d) = doctors.iter().find(|d| d.name == *name) {
                admin.set_availability(d.id, &template(i, today)).await?;
            }
        }
        p.done += 1;
        for (name, email) in PATIENTS {
            step(&mut p, format!("patient {email}"));
            if !existing.contains(*email) {
                let c = self.client()?;
                let v = c.verify_email(email).await?;
                let body = mail_to(&outbox, email).await?;
                let code =
                    code_in(&body, false).ok_or_else(|| SeedError::NoMail(email.to_string()))?;
                c.register_patient(&v, &code, email, name, "+49 30 5550101", DEMO_PASSWORD)
                    .await?;
            }
            p.done += 1;
        }
        step(&mut p, "bookings and completed visits".into());
        self.bookings(&doctors).await?;
        p.done += 1;
        step(&mut p, "reports (sealed and signed by Dana Herz)".into());
        self.reports().await?;
        p.done += 1;
        std::fs::write(
            &marker,
            "demo data seeded; delete this folder to start over\n",
        )?;
        p.done = total;
        p.finished = true;
        step(&mut p, "ready".into());
        Ok(())
    }

    /// Dana Herz uploads two small reports for the patient of the completed visit; the patient
    /// releases the first with the code mailed to them, so the demo shows both states.
    /// Idempotent: counts what Dana already wrote.
    async fn reports(&self) -> Result<(), SeedError> {
        let state = self.data.join("demo-client-state");
        let files = self.data.join("demo-reports");
        std::fs::create_dir_all(&files)?;
        let mut doc = self.client()?;
        let me = doc
            .login(&doctor_email(DOCTORS[0].0), DEMO_PASSWORD)
            .await?;
        let patient_email = PATIENTS[0].1;
        let Some(patient) = doc
            .patients(PATIENTS[0].0, 1)
            .await?
            .items
            .into_iter()
            .find(|p| p.email == patient_email)
        else {
            // No completed visit (seeding a folder someone changed): no reports then.
            return Ok(());
        };
        let written = doc.reports(None).await?.reports.len();
        let outbox = self.data.join("outbox");
        let demo: [(&str, &str, String); 2] = [
            (
                "echocardiogram.txt",
                "Echocardiogram",
                format!(
                    "Echocardiogram of {}\n\nLeft ventricle normal in size and function; ejection fraction 62 %. No valve disease. Demo data.\n",
                    PATIENTS[0].0
                ),
            ),
            (
                "blood-panel.txt",
                "Blood panel",
                format!(
                    "Blood panel of {}\n\nHaemoglobin 14.1 g/dl, leukocytes 6.2/nl, CRP < 5 mg/l. Demo data.\n",
                    PATIENTS[0].0
                ),
            ),
        ];
        for (i, (file, title, text)) in demo.iter().enumerate().skip(written) {
            let path = files.join(file);
            std::fs::write(&path, text)?;
            let ledger = Ledger::sync(&doc, &state, None, 3600).await?;
            let mails_before = mails_to(&outbox, patient_email);
            let out = upload(
                &doc,
                &me,
                &ledger,
                patient.id,
                &path,
                &UploadOptions {
                    state_dir: &state,
                    chunk_size: crate::seal::DEFAULT_CHUNK_SIZE,
                    transfers: 2,
                    title: title.to_string(),
                    note: String::new(),
                    cancel: None,
                    progress: None,
                },
            )
            .await?;
            // The first is released with the mailed code; the second waits for it.
            if i == 0 && out.commit.release_request_id.is_some() {
                let body = mail_after(&outbox, patient_email, mails_before).await?;
                let code = code_in(&body, false)
                    .ok_or_else(|| SeedError::NoMail(patient_email.to_string()))?;
                let pat = self.login(patient_email).await?;
                if let Some(p) = pat
                    .otp_pending()
                    .await?
                    .into_iter()
                    .find(|p| p.report_id == out.report_id)
                {
                    pat.otp_verify(p.request_id, &code).await?;
                }
            }
        }
        Ok(())
    }

    async fn bookings(&self, doctors: &[crate::api::Doctor]) -> Result<(), SeedError> {
        let tomorrow = Utc::now().date_naive() + Days::days(1);
        let week = tomorrow + Days::days(13);
        for (i, (_, email)) in PATIENTS.iter().enumerate() {
            let c = self.login(email).await?;
            if !c.bookings(&[]).await?.items.is_empty() {
                continue;
            }
            for k in 0..2 {
                let Some(d) = doctors.get((i * 3 + k * 5) % doctors.len().max(1)) else {
                    continue;
                };
                let slots = c.slots(d.id, Some(tomorrow), Some(week)).await?.slots;
                let Some(s) = slots.get(2 + i * 2 + k) else {
                    continue;
                };
                // A slot taken meanwhile is no reason to stop seeding.
                let _ = c
                    .book(&BookRequest {
                        doctor_id: d.id,
                        start: s.start,
                        patient_id: None,
                    })
                    .await;
            }
            // One visit of the demo patient with Dana Herz, completed: checked in by
            // reception, closed by the doctor.
            if i == 0
                && let Some(dana) = doctors.iter().find(|d| d.name == DOCTORS[0].0)
            {
                let slots = c.slots(dana.id, Some(tomorrow), Some(week)).await?.slots;
                let mut booked = None;
                // The latest free slots: the first day of her calendar keeps its free rows.
                for s in slots.iter().rev().take(10) {
                    let r = c
                        .book(&BookRequest {
                            doctor_id: dana.id,
                            start: s.start,
                            patient_id: None,
                        })
                        .await;
                    if let Ok(b) = r {
                        booked = Some(b);
                        break;
                    }
                }
                if let (Some(b), Some(begin_now)) = (booked, &self.begin_now) {
                    begin_now(b.id).await.map_err(SeedError::History)?;
                    let desk = self.login(RECEPTION_EMAIL).await?;
                    desk.booking_action(b.id, "check-in").await?;
                    let doc = self.login(&doctor_email(DOCTORS[0].0)).await?;
                    doc.booking_action(b.id, "complete").await?;
                }
            }
        }
        Ok(())
    }
}

//! Effects run here, on tokio tasks; each answers with one action. Errors become text for the
//! status bar, never a panic.

use std::path::Path;

use chrono::{Datelike, Duration as Days, NaiveDate};
use futures::future::join_all;
use tokio::sync::mpsc::UnboundedSender;

use crate::client::ClientError;
use crate::tui::action::{Action, Effect, UiResult};
use crate::tui::state::{CalendarData, DoctorRow, Mail};

/// Runs `effect` on its own task and sends its answer to `tx`. Effects that derive keys
/// (Argon2id, ~0.35 s of CPU) run on a blocking thread so the runtime's workers, which also
/// serve an embedded server, stay free.
pub fn spawn(effect: Effect, tx: UnboundedSender<Action>) {
    if matches!(
        effect,
        Effect::Login { .. } | Effect::RegisterPatient { .. }
    ) {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            if let Some(a) = handle.block_on(perform(effect)) {
                let _ = tx.send(a);
            }
        });
        return;
    }
    tokio::spawn(async move {
        if let Some(a) = perform(effect).await {
            let _ = tx.send(a);
        }
    });
}

fn ui(e: ClientError) -> String {
    e.to_string()
}

/// What a finished effect reports. Tests call this directly to drive journeys.
pub async fn perform(effect: Effect) -> Option<Action> {
    match run(effect).await {
        Ok(a) => a,
        // The server ended the session (expired, revoked): the client locks itself.
        Err(why) => Some(Action::SessionEnded(why)),
    }
}

/// `Err(why)` when the server says the session is over.
fn end_or<T>(r: &Result<T, ClientError>) -> Result<(), String> {
    use crate::api::codes;
    match r {
        Err(e)
            if matches!(
                e.code(),
                Some(codes::SESSION_EXPIRED | codes::SESSION_REVOKED | codes::UNAUTHENTICATED)
            ) =>
        {
            Err(e.to_string())
        }
        _ => Ok(()),
    }
}

async fn run(effect: Effect) -> Result<Option<Action>, String> {
    Ok(Some(match effect {
        Effect::Later { after, action } => {
            tokio::time::sleep(after).await;
            *action
        }
        Effect::Login {
            mut client,
            email,
            password,
        } => {
            let r = client.login(&email, &password).await;
            drop(password);
            Action::LoggedIn(r.map(|l| Box::new((client, l))).map_err(ui))
        }
        Effect::VerifyEmail { client, email } => {
            Action::CodeMailed(client.verify_email(&email).await.map_err(ui))
        }
        Effect::RegisterPatient {
            client,
            verification,
            code,
            email,
            name,
            phone,
            password,
        } => {
            // Argon2 is CPU work: keep it off the runtime's I/O threads.
            let r = client
                .register_patient(&verification, &code, &email, &name, &phone, &password)
                .await;
            Action::Registered(r.map(|_| email).map_err(ui))
        }
        Effect::Logout { client } => {
            let _ = client.logout().await;
            return Ok(None);
        }
        Effect::SearchDoctors {
            client,
            id,
            query,
            today,
        } => {
            let r = search_doctors(&client, &query, today).await;
            end_or(&r)?;
            Action::DoctorsLoaded {
                id,
                result: r.map_err(ui),
            }
        }
        Effect::LoadCalendar {
            client,
            id,
            doctor,
            month,
            today,
            with_availability,
        } => {
            let r = load_calendar(&client, doctor, month, today, with_availability).await;
            end_or(&r)?;
            Action::CalendarLoaded {
                id,
                result: r.map_err(ui),
            }
        }
        Effect::LoadBookings {
            client,
            id,
            from,
            to,
        } => {
            let r = client
                .bookings(&[("from", from.to_string()), ("to", to.to_string())])
                .await
                .map(|mut l| {
                    l.items.sort_by_key(|b| b.start);
                    l.items
                });
            end_or(&r)?;
            Action::BookingsLoaded {
                id,
                result: r.map_err(ui),
            }
        }
        Effect::SearchPatients { client, id, query } => {
            let r = client.patients(&query, 1).await.map(|p| p.items);
            end_or(&r)?;
            Action::PatientsLoaded {
                id,
                result: r.map_err(ui),
            }
        }
        Effect::Book { client, request } => {
            let r = client.book(&request).await;
            end_or(&r)?;
            Action::Booked(r.map_err(ui))
        }
        Effect::Transition {
            client,
            booking,
            action,
        } => {
            let r = client.booking_action(booking, action).await;
            end_or(&r)?;
            Action::BookingChanged(r.map_err(ui))
        }
        Effect::LoadMailbox { dir } => Action::MailboxLoaded(
            tokio::task::spawn_blocking(move || read_outbox(&dir))
                .await
                .unwrap_or_else(|e| Err(e.to_string())),
        ),
    }))
}

/// Name and specialty both match as you type: two directory queries, merged.
async fn search_doctors(
    client: &crate::client::ApiClient,
    query: &str,
    today: NaiveDate,
) -> Result<(Vec<DoctorRow>, Option<String>), ClientError> {
    let (by_name, by_specialty) =
        tokio::join!(client.doctors(query, "", 1), client.doctors("", query, 1));
    let mut doctors = by_name?.items;
    if !query.is_empty() {
        for d in by_specialty?.items {
            if !doctors.iter().any(|x| x.id == d.id) {
                doctors.push(d);
            }
        }
    }
    doctors.sort_by(|a, b| a.specialty.cmp(&b.specialty).then(a.name.cmp(&b.name)));
    let to = today + Days::days(13);
    let slots = join_all(
        doctors
            .iter()
            .map(|d| client.slots(d.id, Some(today), Some(to))),
    )
    .await;
    let mut tz = None;
    let rows = doctors
        .into_iter()
        .zip(slots)
        .map(|(doctor, s)| {
            let next_free = s.ok().and_then(|s| {
                tz.get_or_insert(s.timezone);
                s.slots.into_iter().next()
            });
            DoctorRow { doctor, next_free }
        })
        .collect();
    Ok((rows, tz))
}

async fn load_calendar(
    client: &crate::client::ApiClient,
    doctor: uuid::Uuid,
    month: NaiveDate,
    today: NaiveDate,
    with_availability: bool,
) -> Result<CalendarData, ClientError> {
    let first = month.with_day(1).unwrap_or(month);
    let last = first
        .checked_add_months(chrono::Months::new(1))
        .and_then(|d| d.pred_opt())
        .unwrap_or(first);
    let slots_fut = async {
        if last < today {
            Ok(None)
        } else {
            client
                .slots(doctor, Some(first.max(today)), Some(last))
                .await
                .map(Some)
        }
    };
    let query = [
        ("from", first.to_string()),
        ("to", last.to_string()),
        ("doctor_id", doctor.to_string()),
    ];
    let bookings_fut = client.bookings(&query);
    let avail_fut = async {
        if with_availability {
            client.availability(doctor).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (d, s, b, a) = tokio::join!(client.doctor(doctor), slots_fut, bookings_fut, avail_fut);
    let doctor = d?;
    let s = s?;
    // A role that may not list bookings or read availability still sees the free slots.
    let bookings = match b {
        Ok(l) => l
            .items
            .into_iter()
            .filter(|b| b.doctor_id == doctor.id)
            .collect(),
        Err(e) if e.code() == Some(crate::api::codes::FORBIDDEN) => vec![],
        Err(e) => return Err(e),
    };
    let availability = a.ok().flatten();
    let timezone = s
        .as_ref()
        .map(|s| s.timezone.clone())
        .or_else(|| availability.as_ref().map(|a| a.timezone.clone()))
        .unwrap_or_default();
    Ok(CalendarData {
        doctor,
        slots: s.map(|s| s.slots).unwrap_or_default(),
        bookings,
        availability,
        timezone,
    })
}

/// The `.eml` files of the demo outbox, newest first. The files are the server's, but read
/// as untrusted text: anything odd is shown as it is or skipped, never trusted.
pub fn read_outbox(dir: &Path) -> UiResult<Vec<Mail>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("outbox {}: {e}", dir.display())),
    };
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files.reverse();
    files.truncate(200);
    let mut out = Vec::new();
    for p in files {
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let file = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(parse_mail(file, &text));
    }
    Ok(out)
}

pub fn parse_mail(file: String, text: &str) -> Mail {
    let text = text.replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    // Unfold continuation lines.
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    let header = |name: &str| -> String {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let encoding = header("Content-Transfer-Encoding").to_ascii_lowercase();
    let body = match encoding.as_str() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| body.to_string())
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.to_string(),
    };
    Mail {
        file,
        date: header("Date"),
        to: header("To"),
        subject: decode_subject(&header("Subject")),
        body: body.trim_end().to_string(),
    }
}

fn quoted_printable(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2))
                && let Ok(v) = u8::from_str_radix(&format!("{}{}", *h as char, *l as char), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words of a subject line.
fn decode_subject(s: &str) -> String {
    use base64::Engine;
    let mut out = String::new();
    for word in s.split_whitespace() {
        let parts: Vec<&str> = word.split('?').collect();
        if parts.len() == 5 && parts[0] == "=" && parts[4] == "=" {
            let decoded = match parts[2].to_ascii_lowercase().as_str() {
                "b" => base64::engine::general_purpose::STANDARD
                    .decode(parts[3])
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                "q" => Some(quoted_printable(&parts[3].replace('_', " "))),
                _ => None,
            };
            if let Some(d) = decoded {
                out.push_str(&d);
                continue;
            }
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_parsing_survives_odd_input() {
        let m = parse_mail(
            "a.eml".into(),
            "To: pat@x.org\r\nSubject: =?utf-8?b?WW91ciBjb2Rl?=\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCode: 123=\r\n456 caf=C3=A9\r\n",
        );
        assert_eq!(m.to, "pat@x.org");
        assert_eq!(m.subject, "Your code");
        assert_eq!(m.body, "Code: 123456 café");
        for junk in [
            "",
            "\n\n",
            "Subject: =?x?q?=ZZ?=",
            "=",
            "Content-Transfer-Encoding: base64\n\n!!!",
        ] {
            let _ = parse_mail("j".into(), junk);
        }
    }
}

//! The directory, slots, bookings, availability and the patient search.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use uuid::Uuid;

use clinvault::api::{Availability, BookRequest, WeeklyBlock};
use clinvault::config::Config;

use super::signed_in;

#[derive(Args)]
pub struct AvailabilityArgs {
    /// The doctor (default: yourself).
    doctor: Option<Uuid>,
    /// Replace the template: blocks like `mon 09:00-12:00/20` (20-minute slots); repeatable.
    #[arg(long = "block")]
    blocks: Vec<String>,
    /// Days off (YYYY-MM-DD); repeatable. With --block or --file they join the new template;
    /// alone, they are added to the current one.
    #[arg(long = "day-off")]
    days_off: Vec<NaiveDate>,
    /// Set from a JSON file `{ "weekly": [...], "days_off": [...] }`.
    #[arg(long, conflicts_with = "blocks")]
    file: Option<PathBuf>,
}

pub async fn doctors(cfg: &Config, q: &str, specialty: &str, page: u32) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let p = c.doctors(q, specialty, page).await?;
    for d in &p.items {
        out!(
            "{}  {:<28} {:<20} keys {}",
            d.id,
            super::shown(&d.name),
            super::shown(&d.specialty),
            clinvault::seal::fingerprint(&d.public_keys)
        );
    }
    out!("page {} ({} of {} shown)", p.page, p.items.len(), p.total);
    Ok(())
}

pub async fn slots(
    cfg: &Config,
    doctor: Uuid,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
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

pub async fn book(
    cfg: &Config,
    doctor: Uuid,
    start: DateTime<Utc>,
    patient: Option<Uuid>,
) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
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
        super::shown(&b.doctor_name),
        b.start.to_rfc3339()
    );
    Ok(())
}

/// `cancel`, `check-in`, `complete`, `no-show`.
pub async fn action(cfg: &Config, id: Uuid, action: &str) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let b = c.booking_action(id, action).await?;
    out!("booking {} is now {}", b.id, b.status.as_str());
    Ok(())
}

pub async fn bookings(
    cfg: &Config,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    status: Option<String>,
) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
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
            super::shown(&b.doctor_name),
            super::shown(&b.patient_name)
        );
    }
    out!("{} bookings", list.items.len());
    Ok(())
}

pub async fn patients(cfg: &Config, q: &str, page: u32) -> Result<()> {
    let (c, _) = signed_in(cfg)?;
    let p = c.patients(q, page).await?;
    for x in &p.items {
        out!(
            "{}  {:<28} {:<32} {}",
            x.id,
            super::shown(&x.name),
            super::shown(&x.email),
            super::shown(&x.phone)
        );
    }
    out!("page {} ({} of {} shown)", p.page, p.items.len(), p.total);
    Ok(())
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

pub async fn availability(cfg: &Config, a: AvailabilityArgs) -> Result<()> {
    let (c, saved) = signed_in(cfg)?;
    let doctor = a.doctor.unwrap_or(saved.user_id);
    let new = if let Some(f) = a.file {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let mut av = serde_json::from_str::<Availability>(&text)
            .with_context(|| format!("{} is not availability JSON", f.display()))?;
        av.days_off.extend(a.days_off);
        av.days_off.sort();
        av.days_off.dedup();
        Some(av)
    } else if a.blocks.is_empty() && !a.days_off.is_empty() {
        // Days off alone: added to the weekly template as it stands.
        let mut av = c.availability(doctor).await?.availability;
        av.days_off.extend(a.days_off);
        av.days_off.sort();
        av.days_off.dedup();
        Some(av)
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

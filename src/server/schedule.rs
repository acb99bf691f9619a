//! Slots from a weekly template, in the clinic's time zone. Pure: no I/O.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::api::WeeklyBlock;

/// Bookings occupy whole 5-minute quanta; slot lengths and starts are multiples of it.
pub const QUANTUM_MINUTES: u32 = 5;
pub const QUANTUM_MS: i64 = QUANTUM_MINUTES as i64 * 60_000;
pub const MAX_SLOT_MINUTES: u32 = 240;
pub const MAX_BLOCKS: usize = 64;
pub const MAX_DAYS_OFF: usize = 400;

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A validated block: weekday 0 = Monday, minutes since local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub weekday: u8,
    pub start_min: u32,
    pub end_min: u32,
    pub slot_minutes: u32,
}

impl Block {
    pub fn to_wire(self) -> WeeklyBlock {
        WeeklyBlock {
            weekday: WEEKDAYS[self.weekday as usize % 7].to_string(),
            start: format!("{:02}:{:02}", self.start_min / 60, self.start_min % 60),
            end: format!("{:02}:{:02}", self.end_min / 60, self.end_min % 60),
            slot_minutes: self.slot_minutes,
        }
    }
}

fn parse_hhmm(s: &str) -> Option<u32> {
    if s == "24:00" {
        return Some(24 * 60);
    }
    let t = NaiveTime::parse_from_str(s, "%H:%M").ok()?;
    Some(t.hour_min())
}

trait HourMin {
    fn hour_min(&self) -> u32;
}

impl HourMin for NaiveTime {
    fn hour_min(&self) -> u32 {
        use chrono::Timelike;
        self.hour() * 60 + self.minute()
    }
}

/// Checks a template: known weekdays, `HH:MM` on 5-minute steps, slots fitting, no overlaps.
pub fn parse_blocks(blocks: &[WeeklyBlock]) -> Result<Vec<Block>, String> {
    if blocks.len() > MAX_BLOCKS {
        return Err(format!("at most {MAX_BLOCKS} weekly blocks"));
    }
    let mut out = Vec::with_capacity(blocks.len());
    for b in blocks {
        let wd = b.weekday.trim().to_lowercase();
        let weekday = WEEKDAYS
            .iter()
            .position(|d| wd.starts_with(d))
            .ok_or_else(|| {
                "weekday must be one of mon, tue, wed, thu, fri, sat, sun".to_string()
            })?;
        let start = parse_hhmm(&b.start).ok_or("start must be HH:MM")?;
        let end = parse_hhmm(&b.end).ok_or("end must be HH:MM")?;
        if start % QUANTUM_MINUTES != 0 || end % QUANTUM_MINUTES != 0 {
            return Err("start and end must fall on 5-minute steps".into());
        }
        if b.slot_minutes == 0
            || b.slot_minutes % QUANTUM_MINUTES != 0
            || b.slot_minutes > MAX_SLOT_MINUTES
        {
            return Err(format!(
                "slot_minutes must be a multiple of 5 from 5 to {MAX_SLOT_MINUTES}"
            ));
        }
        if end < start + b.slot_minutes {
            return Err(format!(
                "{} {}–{}: not even one {}-minute slot fits",
                WEEKDAYS[weekday], b.start, b.end, b.slot_minutes
            ));
        }
        out.push(Block {
            weekday: weekday as u8,
            start_min: start,
            end_min: end,
            slot_minutes: b.slot_minutes,
        });
    }
    out.sort_by_key(|b| (b.weekday, b.start_min));
    for w in out.windows(2) {
        if w[0].weekday == w[1].weekday && w[1].start_min < w[0].end_min {
            return Err(format!(
                "blocks overlap on {}",
                WEEKDAYS[w[0].weekday as usize]
            ));
        }
    }
    Ok(out)
}

/// The local instant for a wall-clock time; a time skipped by a DST change has no slot, an
/// ambiguous one takes its first occurrence.
fn local_instant(tz: &Tz, day: NaiveDate, minutes: u32) -> Option<DateTime<Utc>> {
    let naive = day.and_hms_opt(0, 0, 0)? + Duration::minutes(minutes as i64);
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Every slot (start, end) on the local days `from..=to`, days off skipped.
pub fn slots(
    blocks: &[Block],
    days_off: &HashSet<NaiveDate>,
    tz: &Tz,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut day = from;
    while day <= to {
        if !days_off.contains(&day) {
            let wd = day.weekday().num_days_from_monday() as u8;
            for b in blocks.iter().filter(|b| b.weekday == wd) {
                let mut m = b.start_min;
                while m + b.slot_minutes <= b.end_min {
                    // The length is real time, so a slot across a DST change keeps it.
                    if let Some(s) = local_instant(tz, day, m) {
                        out.push((s, s + Duration::minutes(b.slot_minutes as i64)));
                    }
                    m += b.slot_minutes;
                }
            }
        }
        match day.succ_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
    out.sort();
    out
}

/// The 5-minute quanta `[start, end)` covers, as held in `booking_holds`.
pub fn quanta(start_ms: i64, end_ms: i64) -> std::ops::Range<i64> {
    start_ms.div_euclid(QUANTUM_MS)..(end_ms + QUANTUM_MS - 1).div_euclid(QUANTUM_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(wd: &str, s: &str, e: &str, len: u32) -> WeeklyBlock {
        WeeklyBlock {
            weekday: wd.into(),
            start: s.into(),
            end: e.into(),
            slot_minutes: len,
        }
    }

    #[test]
    fn template_rules() {
        assert!(parse_blocks(&[block("mon", "09:00", "12:00", 20)]).is_ok());
        assert!(parse_blocks(&[block("xyz", "09:00", "12:00", 20)]).is_err());
        assert!(parse_blocks(&[block("mon", "09:03", "12:00", 20)]).is_err());
        assert!(parse_blocks(&[block("mon", "09:00", "09:10", 20)]).is_err());
        assert!(parse_blocks(&[block("mon", "9am", "12:00", 20)]).is_err());
        assert!(
            parse_blocks(&[
                block("mon", "09:00", "12:00", 20),
                block("mon", "11:00", "13:00", 20)
            ])
            .is_err()
        );
    }

    #[test]
    fn slots_follow_the_time_zone_and_dst() {
        let blocks = parse_blocks(&[block("sun", "01:00", "04:00", 60)]).unwrap();
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29: clocks jump 02:00 -> 03:00 in Berlin; the 02:00 slot does not exist.
        let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let s = slots(&blocks, &HashSet::new(), &tz, day, day);
        let hours: Vec<String> = s
            .iter()
            .map(|(a, _)| a.with_timezone(&tz).format("%H:%M").to_string())
            .collect();
        assert_eq!(hours, vec!["01:00", "03:00"]);
        let off: HashSet<_> = [day].into_iter().collect();
        assert!(slots(&blocks, &off, &tz, day, day).is_empty());
    }

    #[test]
    fn quanta_cover_the_interval() {
        assert_eq!(quanta(0, QUANTUM_MS * 4), 0..4);
        assert_eq!(quanta(QUANTUM_MS, QUANTUM_MS * 2 + 1), 1..3);
    }
}

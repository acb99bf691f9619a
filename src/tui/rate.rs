//! The transfer line's speed and time left: a sliding window over recent progress, so a
//! link that slows down or stalls shows it instead of the average since the start.
//! Times are passed in (the app's clock), so tests drive it with a fake clock.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

/// How far back the rate looks.
const WINDOW_SECS: i64 = 10;
/// No new bytes for this long (or three usual gaps between updates, if longer) is a stall.
const STALL_SECS: i64 = 5;
const MAX_SAMPLES: usize = 128;

#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    /// (when, bytes done), one per change of `done`, oldest first.
    samples: VecDeque<(DateTime<Utc>, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Not enough progress seen yet to say.
    Unknown,
    /// No bytes for a while: the old rate would be a lie.
    Stalled,
    Rate {
        bytes_per_sec: f64,
        /// `None` when nothing is left to say it from.
        secs_left: Option<u64>,
    },
}

impl RateMeter {
    /// Notes `done` bytes at `now`. Bytes already there when the meter saw its first update
    /// (a resumed transfer) are the baseline, not speed.
    pub fn record(&mut self, now: DateTime<Utc>, done: u64) {
        if let Some(&(_, last)) = self.samples.back() {
            if done == last {
                return;
            }
            if done < last {
                // Started over: the old samples say nothing about this run.
                self.samples.clear();
            }
        }
        self.samples.push_back((now, done));
        let horizon = now - Duration::seconds(WINDOW_SECS);
        // Keep one sample at or before the horizon, so the window spans it.
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|s| s.0 <= horizon) {
            self.samples.pop_front();
        }
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    pub fn speed(&self, now: DateTime<Utc>, total: u64) -> Speed {
        let (Some(&(t0, b0)), Some(&(t1, b1))) = (self.samples.front(), self.samples.back()) else {
            return Speed::Unknown;
        };
        let idle = now - t1;
        let gaps = self.samples.len().saturating_sub(1) as i32;
        let usual_gap = if gaps > 0 {
            (t1 - t0) / gaps
        } else {
            Duration::zero()
        };
        let stall_after = Duration::seconds(STALL_SECS).max(usual_gap * 3);
        if idle >= stall_after {
            return Speed::Stalled;
        }
        if gaps == 0 {
            return Speed::Unknown;
        }
        // Up to now, not to the last update: a slowing link shows as it slows.
        let span = (now - t0).num_milliseconds();
        if span <= 0 {
            return Speed::Unknown;
        }
        let bytes_per_sec = (b1 - b0) as f64 * 1000.0 / span as f64;
        let secs_left = (bytes_per_sec > 0.0 && total >= b1)
            .then(|| ((total - b1) as f64 / bytes_per_sec).ceil() as u64);
        Speed::Rate {
            bytes_per_sec,
            secs_left,
        }
    }
}

/// `1:05 left`, or `—` when unknown.
pub fn left_words(speed: Speed) -> String {
    match speed {
        Speed::Rate {
            secs_left: Some(s), ..
        } => format!("{}:{:02} left", s / 60, s % 60),
        _ => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms)
            .single()
            .expect("time")
    }

    const KIB: u64 = 1024;

    fn rate(s: Speed) -> f64 {
        match s {
            Speed::Rate { bytes_per_sec, .. } => bytes_per_sec,
            other => panic!("a rate, got {other:?}"),
        }
    }

    #[test]
    fn nothing_known_until_two_updates() {
        let mut m = RateMeter::default();
        assert_eq!(m.speed(at(0), 100), Speed::Unknown);
        m.record(at(0), 10);
        assert_eq!(m.speed(at(1000), 100), Speed::Unknown);
        assert_eq!(left_words(m.speed(at(1000), 100)), "—");
    }

    #[test]
    fn steady_link_rate_and_time_left() {
        let mut m = RateMeter::default();
        // 256 KiB/s in 1 MiB chunks: one update every 4 s.
        for i in 0..=5 {
            m.record(at(i * 4000), i as u64 * 1024 * KIB);
        }
        let s = m.speed(at(20_000), 10 * 1024 * KIB);
        assert!((rate(s) - 256.0 * KIB as f64).abs() < 1.0, "{s:?}");
        // 5 MiB left at 256 KiB/s.
        assert_eq!(left_words(s), "0:20 left");
        // Between two chunks (3 s after the last) it is not a stall: gaps are 4 s here.
        assert!(matches!(
            m.speed(at(23_000), 10 * 1024 * KIB),
            Speed::Rate { .. }
        ));
    }

    #[test]
    fn slowing_link_shows_the_recent_rate_not_the_average() {
        let mut m = RateMeter::default();
        // 30 s at 1 MiB/s, then 20 s at 64 KiB/s.
        let mut done = 0;
        for s in 0..=30 {
            done = s as u64 * 1024 * KIB;
            m.record(at(s * 1000), done);
        }
        for s in 31..=50 {
            done += 64 * KIB;
            m.record(at(s * 1000), done);
        }
        let r = rate(m.speed(at(50_000), done + 640 * KIB));
        // The average since the start would be ~640 KiB/s.
        assert!((r - 64.0 * KIB as f64).abs() < 1.0, "{r}");
        assert_eq!(
            left_words(m.speed(at(50_000), done + 640 * KIB)),
            "0:10 left"
        );
    }

    #[test]
    fn stall_is_said_then_clears_when_bytes_come_again() {
        let mut m = RateMeter::default();
        for s in 0..=4 {
            m.record(at(s * 1000), s as u64 * 100 * KIB);
        }
        assert!(matches!(
            m.speed(at(5_000), 10_000 * KIB),
            Speed::Rate { .. }
        ));
        // The connection is cut: no bytes for 5 s.
        assert_eq!(m.speed(at(9_000), 10_000 * KIB), Speed::Stalled);
        assert_eq!(left_words(m.speed(at(9_000), 10_000 * KIB)), "—");
        // A progress report of the same count (a re-sent chunk) is not progress.
        m.record(at(9_500), 400 * KIB);
        assert_eq!(m.speed(at(9_600), 10_000 * KIB), Speed::Stalled);
        // Bytes again: a rate again, measured over the window (the stall lowers it).
        m.record(at(10_000), 500 * KIB);
        let r = rate(m.speed(at(10_000), 10_000 * KIB));
        assert!(r > 0.0 && r < 100.0 * KIB as f64, "{r}");
    }

    #[test]
    fn resumed_transfer_does_not_count_what_was_sent_before() {
        let mut m = RateMeter::default();
        // The first update after a resume already says 90 MiB.
        m.record(at(0), 90 * 1024 * KIB);
        m.record(at(2000), 90 * 1024 * KIB + 512 * KIB);
        let r = rate(m.speed(at(2000), 100 * 1024 * KIB));
        assert!((r - 256.0 * KIB as f64).abs() < 1.0, "{r}");
    }

    #[test]
    fn a_restart_from_zero_starts_the_meter_over() {
        let mut m = RateMeter::default();
        m.record(at(0), 0);
        m.record(at(1000), 1024 * KIB);
        m.record(at(2000), 10);
        assert_eq!(m.speed(at(2500), 1024 * KIB), Speed::Unknown);
    }
}

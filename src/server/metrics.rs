//! Counters for `GET /v1/metrics` in Prometheus text format (DESIGN.md §8).
//!
//! Labels are route templates (`/v1/reports/{id}`), methods and status codes only: never a
//! concrete path, id, name or query, which could identify a patient.
//! Counters are per process; the ledger size is read from the shared database when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    /// Cumulative counts are computed at render; these are per bucket (+Inf last).
    buckets: [u64; LATENCY_BOUNDS.len() + 1],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    /// (method, route template, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (method, route template) → latency.
    latency: Mutex<BTreeMap<(String, String), Histogram>>,
    pub chunk_bytes_in: AtomicU64,
    pub chunk_bytes_out: AtomicU64,
    pub otp_sent: AtomicU64,
    pub otp_send_failed: AtomicU64,
    pub otp_wrong: AtomicU64,
}

impl Metrics {
    /// One finished request. `route` must be a template (or `-` for no route).
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
        }
        let secs = took.as_secs_f64();
        if let Ok(mut m) = self.latency.lock() {
            let h = m
                .entry((method.to_string(), route.to_string()))
                .or_default();
            let i = LATENCY_BOUNDS
                .iter()
                .position(|b| secs <= *b)
                .unwrap_or(LATENCY_BOUNDS.len());
            h.buckets[i] += 1;
            h.sum += secs;
            h.count += 1;
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The text exposition format, version 0.0.4.
    pub fn render(&self, ledger_size: Option<u64>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP clinvault_http_requests_total Requests answered, by route template and status.\n\
             # TYPE clinvault_http_requests_total counter\n",
        );
        if let Ok(m) = self.requests.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "clinvault_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP clinvault_http_request_duration_seconds Time to answer, by route template.\n\
             # TYPE clinvault_http_request_duration_seconds histogram\n",
        );
        if let Ok(m) = self.latency.lock() {
            for ((method, route), h) in m.iter() {
                let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
                let mut cumulative = 0;
                for (i, bound) in LATENCY_BOUNDS.iter().enumerate() {
                    cumulative += h.buckets[i];
                    let _ = writeln!(
                        out,
                        "clinvault_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                    );
                }
                cumulative += h.buckets[LATENCY_BOUNDS.len()];
                let _ = writeln!(
                    out,
                    "clinvault_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}\n\
                     clinvault_http_request_duration_seconds_sum{{{labels}}} {}\n\
                     clinvault_http_request_duration_seconds_count{{{labels}}} {}",
                    h.sum, h.count
                );
            }
        }
        let counters = [
            (
                "clinvault_chunk_bytes_in_total",
                "Sealed chunk bytes received and stored.",
                &self.chunk_bytes_in,
            ),
            (
                "clinvault_chunk_bytes_out_total",
                "Sealed chunk bytes served.",
                &self.chunk_bytes_out,
            ),
            (
                "clinvault_otp_sent_total",
                "One-time code mails handed to the mailer.",
                &self.otp_sent,
            ),
            (
                "clinvault_otp_send_failed_total",
                "One-time code mails that could not be sent.",
                &self.otp_send_failed,
            ),
            (
                "clinvault_otp_wrong_total",
                "Wrong one-time codes entered.",
                &self.otp_wrong,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        if let Some(size) = ledger_size {
            let _ = writeln!(
                out,
                "# HELP clinvault_ledger_size Entries in the ledger.\n\
                 # TYPE clinvault_ledger_size gauge\nclinvault_ledger_size {size}"
            );
        }
        out
    }
}

/// Label values are route templates we wrote, but escape anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets_and_counters() {
        let m = Metrics::default();
        m.request("GET", "/v1/reports/{id}", 200, Duration::from_millis(3));
        m.request("GET", "/v1/reports/{id}", 200, Duration::from_millis(300));
        m.request("GET", "/v1/reports/{id}", 404, Duration::from_secs(60));
        Metrics::add(&m.chunk_bytes_in, 1234);
        let text = m.render(Some(7));
        assert!(text.contains(
            "clinvault_http_requests_total{method=\"GET\",route=\"/v1/reports/{id}\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "clinvault_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/reports/{id}\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "clinvault_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/reports/{id}\",le=\"0.5\"} 2"
        ));
        assert!(text.contains(
            "clinvault_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/reports/{id}\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("clinvault_chunk_bytes_in_total 1234"));
        assert!(text.contains("clinvault_ledger_size 7"));
    }
}

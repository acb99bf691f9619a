//! Issue 13: database statements per chunk PUT and per chunk GET, counted from sqlx's own
//! statement log (tracing target `sqlx::query`), so that per-chunk lookups creeping back show.
//! One test per process: the counting subscriber is global.

mod common;

use std::sync::Mutex;

use clinvault::seal::{ChunkSealer, Dek};
use common::Db;
use common::clinic::{clinic_with, release, report_bytes, upload_file, write_file};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use uuid::Uuid;

static STATEMENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Count;

struct Sql(Option<String>);

impl Visit for Sql {
    fn record_str(&mut self, f: &Field, v: &str) {
        if f.name() == "db.statement" || (f.name() == "summary" && self.0.is_none()) {
            self.0 = Some(v.to_string());
        }
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        if f.name() == "db.statement" || (f.name() == "summary" && self.0.is_none()) {
            self.0 = Some(format!("{v:?}"));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
    fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
        if e.metadata().target() == "sqlx::query" {
            let mut v = Sql(None);
            e.record(&mut v);
            if let Some(s) = v.0 {
                STATEMENTS.lock().unwrap().push(s);
            }
        }
    }
}

fn mark() -> usize {
    STATEMENTS.lock().unwrap().len()
}

/// The statements since `from` that the route ran: not the session check (counted apart:
/// one SELECT per request, an UPDATE of `last_seen_at` at most every few seconds), not the
/// background sweeps, not transaction control.
fn route_statements(from: usize) -> (Vec<String>, usize) {
    let all = STATEMENTS.lock().unwrap()[from..].to_vec();
    let mut session = 0;
    let mut route = Vec::new();
    for s in all {
        let t = s.trim_start().trim_start_matches('"').to_uppercase();
        if t.contains("FROM SESSIONS") || t.contains("UPDATE SESSIONS") {
            session += 1;
        } else if t.contains("TOUCHED_AT <")
            || t.contains("RATE_LIMITS")
            || t.starts_with("BEGIN")
            || t.starts_with("COMMIT")
            || t.starts_with("ROLLBACK")
            || t.starts_with("PRAGMA")
        {
        } else {
            route.push(s);
        }
    }
    (route, session)
}

fn kind(s: &str) -> String {
    let t = s.trim_start().trim_start_matches('"').to_uppercase();
    t.split_whitespace().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn statements_per_chunk_put_and_get() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Count))
        .expect("one subscriber per test process");
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let (route, _) = route_statements(0);
    assert!(
        !route.is_empty(),
        "sqlx's statement log reaches the counter (else this test counts nothing)"
    );

    // PUT: a report opened by hand, chunks sent one by one.
    let report = Uuid::new_v4();
    let data = report_bytes(3 * 4096, b"count");
    let dek = Dek::generate().unwrap();
    let sealer = ChunkSealer::new(&dek, *report.as_bytes(), 4096, data.len() as u64).unwrap();
    c.doc
        .c
        .open_report(&clinvault::api::OpenReportRequest {
            report_id: report,
            patient_id: c.pat.id,
            chunk_size: 4096,
            plaintext_len: data.len() as u64,
        })
        .await
        .unwrap();
    let mut puts = Vec::new();
    for i in 0..sealer.n_chunks() {
        let (off, len) = sealer.chunk_range(i).unwrap();
        let ch = sealer
            .seal(i, data[off as usize..off as usize + len].to_vec())
            .unwrap();
        let from = mark();
        c.doc
            .c
            .put_chunk(report, &ch.chunk_id, ch.ciphertext.clone().into())
            .await
            .unwrap();
        let (new, _) = route_statements(from);
        // The same chunk again (a retry whose answer was lost).
        let from = mark();
        c.doc
            .c
            .put_chunk(report, &ch.chunk_id, ch.ciphertext.into())
            .await
            .unwrap();
        let (again, _) = route_statements(from);
        puts.push((new, again));
    }
    for (new, again) in &puts {
        let kinds: Vec<String> = new.iter().map(|s| kind(s)).collect();
        println!("PUT of a new chunk: {} statements {kinds:?}", new.len());
        println!("PUT of a chunk already linked: {} statements", again.len());
        // One read, then one write transaction: the chunk, its replicas, the guarded link.
        assert_eq!(
            kinds,
            ["SELECT", "INSERT", "INSERT", "INSERT"],
            "statements of a chunk PUT: {new:#?}"
        );
        assert_eq!(again.len(), 1, "a repeated PUT only reads: {again:#?}");
        assert!(!new.iter().any(|s| s.to_uppercase().contains("TOUCHED_AT")));
    }

    // GET: a committed, released report of 3 chunks read by its patient.
    let work = tempfile::tempdir().unwrap();
    let file = write_file(work.path(), "r", &report_bytes(3 << 20, b"get"));
    let out = upload_file(&c, &file, "Counted").await;
    release(&c).await;
    let detail = c.pat.c.report(out.report_id).await.unwrap();
    for i in 0..3u32 {
        let from = mark();
        let bytes = c
            .pat
            .c
            .report_chunk(out.report_id, i, 16 << 20)
            .await
            .unwrap();
        let (new, session) = route_statements(from);
        println!(
            "GET /v1/reports/{{id}}/chunks/{i}: {} statements (+{session} for the session)",
            new.len()
        );
        assert_eq!(new.len(), 1, "one statement per chunk read: {new:#?}");
        assert_eq!(
            hex::encode(clinvault::seal::chunk_id(&bytes)),
            detail.chunk_ids[i as usize]
        );
        // The content-addressed route, kept for auditors and older clients, for comparison.
        let from = mark();
        c.pat
            .c
            .chunk(&detail.chunk_ids[i as usize], None)
            .await
            .unwrap();
        let (old, session) = route_statements(from);
        println!(
            "GET /v1/chunks/{{sha256}}: {} statements (+{session} for the session)",
            old.len()
        );
    }
    c.ts.handle.shutdown().await.unwrap();
}

//! Slow links (issue 13 point 9): a clinic terminal behind a 256 KiB/s line whose connections
//! are cut twice during the upload and twice during the download. Both finish byte-identical,
//! resuming where they were, and re-send at most the chunks in flight at each cut.
//!
//! The throttling, cutting proxy is written here: it forwards plain HTTP on loopback, counts
//! chunk requests in the client's stream, and drops every open connection when the bytes it
//! has carried cross a cut point.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clinvault::client::ApiClient;
use clinvault::client::reports::{TransferOptions, UploadOptions, download, upload};
use common::clinic::{clinic_with, release, report_bytes, upload_options, write_file};
use common::{Db, TEST_KDF};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};

const RATE: f64 = 256.0 * 1024.0;
const CHUNK: u32 = 64 * 1024;
const TRANSFERS: usize = 2;

#[derive(Default)]
struct Counters {
    /// Bytes carried, both directions.
    bytes: AtomicU64,
    puts: AtomicU64,
    gets: AtomicU64,
}

struct Proxy {
    url: String,
    counters: Arc<Counters>,
    /// Cut points in carried bytes; each one crossed drops every open connection.
    cuts: Arc<std::sync::Mutex<Vec<u64>>>,
}

/// One shared line: every forwarded piece waits for its share of `RATE`.
struct Line(Mutex<Instant>);

impl Line {
    async fn pass(&self, n: usize) {
        let wait_until = {
            let mut next = self.0.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(n as f64 / RATE);
            *next
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }
}

fn count(hay: &[u8], needle: &[u8]) -> u64 {
    hay.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    line: Arc<Line>,
    counters: Arc<Counters>,
    cuts: Arc<std::sync::Mutex<Vec<u64>>>,
    cut_tx: watch::Sender<u64>,
    client_side: bool,
) {
    let mut buf = vec![0u8; 8 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if client_side {
            // Request lines may straddle two reads: look at the previous read's tail too.
            let mut look = std::mem::take(&mut tail);
            look.extend_from_slice(&buf[..n]);
            counters
                .puts
                .fetch_add(count(&look, b"PUT /v1/reports/"), Ordering::SeqCst);
            counters.gets.fetch_add(
                count(&look, b"/chunks/").saturating_sub(count(&look, b"PUT /v1/reports/")),
                Ordering::SeqCst,
            );
            tail = look[look.len().saturating_sub(24)..].to_vec();
        }
        line.pass(n).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        let total = counters.bytes.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        let crossed = {
            let mut c = cuts.lock().unwrap();
            let before = c.len();
            c.retain(|&at| at > total);
            before != c.len()
        };
        if crossed {
            cut_tx.send_modify(|g| *g += 1);
        }
    }
}

async fn start_proxy(upstream: String, cuts: Vec<u64>) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counters = Arc::new(Counters::default());
    let cuts = Arc::new(std::sync::Mutex::new(cuts));
    let line = Arc::new(Line(Mutex::new(Instant::now())));
    let (cut_tx, _) = watch::channel(0u64);
    let up = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (c2, k2) = (counters.clone(), cuts.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&up).await else {
                continue;
            };
            let mut cut_rx = cut_tx.subscribe();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let a = pipe(
                cr,
                sw,
                line.clone(),
                c2.clone(),
                k2.clone(),
                cut_tx.clone(),
                true,
            );
            let b = pipe(
                sr,
                cw,
                line.clone(),
                c2.clone(),
                k2.clone(),
                cut_tx.clone(),
                false,
            );
            tokio::spawn(async move {
                // A cut drops both halves of every connection open at that moment.
                tokio::select! {
                    _ = async { tokio::join!(a, b) } => {}
                    _ = cut_rx.changed() => {}
                }
            });
        }
    });
    Proxy {
        url,
        counters,
        cuts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_twice_each_way_at_256_kib_per_second() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let work = tempfile::tempdir().unwrap();
    let len = 1024 * 1024;
    let data = report_bytes(len, b"slow");
    let file = write_file(work.path(), "slow.bin", &data);
    let n_chunks = (len as u64).div_ceil(u64::from(CHUNK));

    // Upload: cut at about a third and two thirds of the way.
    let proxy = start_proxy(c.ts.url.clone(), vec![350 * 1024, 700 * 1024]).await;
    let doc = ApiClient::new(&proxy.url, true, TEST_KDF)
        .unwrap()
        .with_token(c.doc.c.token().unwrap());
    let l = c.doc.ledger().await.unwrap();
    let opts = UploadOptions {
        chunk_size: CHUNK,
        ..upload_options(&c.doc, TRANSFERS, "Slow")
    };
    let mut attempts = 0;
    let out = loop {
        attempts += 1;
        match upload(&doc, &c.doc.me, &l, c.pat.id, &file, &opts).await {
            Ok(o) => break o,
            // A cut that hit a call without retries (open, missing, commit): run it again,
            // which resumes.
            Err(e) if attempts < 5 => eprintln!("upload attempt {attempts}: {e}"),
            Err(e) => panic!("upload did not finish: {e}"),
        }
    };
    assert!(proxy.cuts.lock().unwrap().is_empty(), "both cuts happened");
    let puts = proxy.counters.puts.load(Ordering::SeqCst);
    println!(
        "upload: {n_chunks} chunks, {puts} PUTs through the proxy, {attempts} attempt(s), {} bytes carried",
        proxy.counters.bytes.load(Ordering::SeqCst)
    );
    assert!(
        puts <= n_chunks + 2 * TRANSFERS as u64,
        "{puts} PUTs for {n_chunks} chunks: more than the in-flight chunks were re-sent"
    );
    assert!(puts >= n_chunks);

    // Download, the patient behind the same kind of line.
    release(&c).await;
    let proxy = start_proxy(c.ts.url.clone(), vec![450 * 1024, 800 * 1024]).await;
    let pat = ApiClient::new(&proxy.url, true, TEST_KDF)
        .unwrap()
        .with_token(c.pat.c.token().unwrap());
    let lp = c.pat.ledger().await.unwrap();
    let back = work.path().join("back.bin");
    let mut attempts = 0;
    loop {
        attempts += 1;
        match download(
            &pat,
            &c.pat.me,
            &lp,
            out.report_id,
            &back,
            &TransferOptions::new(TRANSFERS),
        )
        .await
        {
            Ok(_) => break,
            Err(e) if attempts < 5 => eprintln!("download attempt {attempts}: {e}"),
            Err(e) => panic!("download did not finish: {e}"),
        }
    }
    assert!(proxy.cuts.lock().unwrap().is_empty(), "both cuts happened");
    let gets = proxy.counters.gets.load(Ordering::SeqCst);
    println!(
        "download: {n_chunks} chunks, {gets} chunk GETs through the proxy, {attempts} attempt(s)"
    );
    assert_eq!(attempts, 1, "the chunk fetches retried through the cuts");
    assert!(
        gets <= n_chunks + 2 * TRANSFERS as u64,
        "{gets} GETs for {n_chunks} chunks: more than the in-flight chunks were fetched again"
    );
    assert!(std::fs::read(&back).unwrap() == data, "byte-identical");
    c.ts.handle.shutdown().await.unwrap();
}

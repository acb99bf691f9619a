//! Issue 17 point 8: a hostile server's oversize answers are refused, and the client's memory
//! stays flat while it sends them. One test in its own binary, so the resident size measured
//! is this test's alone.

mod common;

use clinvault::client::{ApiClient, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HUGE: u64 = 400 << 20;

/// Peak resident set size of this process so far (VmHWM, Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// A fake server: every request is answered with `head` and then `HUGE` bytes of JSON
/// whitespace, until the client hangs up.
async fn fake_server(head: &'static str) -> String {
    serve_fake(head, None).await
}

/// A fake server answering every request with `head` and `body`, or endless whitespace.
async fn serve_fake(head: &'static str, body: Option<&'static str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                if let Some(body) = body {
                    let _ = sock.write_all(body.as_bytes()).await;
                    return;
                }
                let block = vec![b' '; 64 * 1024];
                let mut sent = 0u64;
                while sent < HUGE {
                    if sock.write_all(&block).await.is_err() {
                        return;
                    }
                    sent += block.len() as u64;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn too_big(e: &ClientError) -> bool {
    matches!(e, ClientError::Decode { why, .. } if why.contains("larger than"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_answers_are_refused_with_flat_memory() {
    let before = rss_bytes();
    let announced = fake_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 419430400\r\n\r\n",
    )
    .await;
    let unannounced = fake_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
    )
    .await;
    let error = fake_server(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
    )
    .await;
    for url in [&announced, &unannounced] {
        let c = ApiClient::new(url, false, common::TEST_KDF).unwrap();
        let e = c.prelogin("a@b.test").await.unwrap_err();
        assert!(too_big(&e), "{url}: {e}");
    }
    let c = ApiClient::new(&error, false, common::TEST_KDF).unwrap();
    let e = c.prelogin("a@b.test").await.unwrap_err();
    assert!(too_big(&e), "error answer: {e}");
    let json = rss_bytes().saturating_sub(before);
    eprintln!(
        "JSON answers: peak resident size grew by {} KiB",
        json >> 10
    );
    assert!(
        json < 16 << 20,
        "the client grew by {} MiB reading hostile JSON answers",
        json >> 20
    );
    for url in [&announced, &unannounced] {
        let c = ApiClient::new(url, false, common::TEST_KDF).unwrap();
        let e = c.chunk("00", None).await.unwrap_err();
        assert!(too_big(&e), "{url}: {e}");
        // A chunk is bounded by the length its index implies, not just the largest chunk.
        let e = c.chunk_limited("00", None, 1000).await.unwrap_err();
        assert!(too_big(&e), "{url}: {e}");
    }
    let grown = rss_bytes().saturating_sub(before);
    eprintln!("and chunks: peak resident size grew by {} KiB", grown >> 10);
    assert!(
        grown < 48 << 20,
        "the client grew by {} MiB reading hostile chunks (at most 16 MiB each)",
        grown >> 20
    );
}

/// The bound a manifest implies per chunk index: full chunks, the short last one, none past.
#[test]
fn chunk_bound_follows_the_manifest() {
    let m = clinvault::seal::Manifest {
        report_id: [1; 16],
        patient_id: [2; 16],
        author_id: [3; 16],
        created_at_ms: 0,
        plaintext_len: 2500,
        chunk_size: 1024,
        n_chunks: 3,
        head: [0; 32],
        meta_hash: [0; 32],
        key_commit: [0; 32],
    };
    let len = clinvault::client::chunk_ciphertext_len;
    assert_eq!(len(&m, 0), 1024 + 16);
    assert_eq!(len(&m, 1), 1024 + 16);
    assert_eq!(len(&m, 2), 452 + 16);
    assert_eq!(len(&m, 3), 0);
}

/// Point 9: KDF parameters above the client's ceiling are refused before any derivation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausting_kdf_parameters_are_refused() {
    const BODY: &str =
        r#"{"salt":"00000000000000000000000000000000","kdf":{"m_kib":4194304,"t":64,"p":1}}"#;
    let head: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            BODY.len()
        )
        .into_boxed_str(),
    );
    let url = serve_fake(head, Some(BODY)).await;
    let mut c = ApiClient::new(&url, false, common::TEST_KDF).unwrap();
    let e = c.login("a@b.test", common::PASSWORD).await.err().unwrap();
    assert!(e.to_string().contains("ceiling"), "{e}");
}

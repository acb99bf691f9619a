//! Readiness with a bucket down, request ids, and the metrics endpoint (DESIGN.md §7, §8).

mod common;

use clinvault::server::chunk_store::BucketConfig;
use common::{Db, http, start_server, start_with};
use uuid::Uuid;

/// A bucket on a port nothing listens on.
fn dead_bucket() -> BucketConfig {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    BucketConfig::S3 {
        name: "dead".into(),
        bucket: "dead".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        path_style: true,
        allow_http: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_the_bucket_that_is_down() {
    let ts = start_with(Db::Sqlite, |c| {
        c.server.buckets = vec![
            BucketConfig::Local {
                name: "a".into(),
                path: "buckets/a".into(),
            },
            dead_bucket(),
        ];
        c.server.replicas = 1;
    })
    .await;
    let r = http()
        .get(format!("{}/v1/ready", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unavailable");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("bucket dead"), "{msg}");
    assert!(!msg.contains("bucket a"), "{msg}");
    // Liveness does not depend on the buckets.
    let h = http()
        .get(format!("{}/v1/health", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    ts.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_everything_answers() {
    let ts = start_server(Db::Sqlite).await;
    let r = http()
        .get(format!("{}/v1/ready", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ts.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_made() {
    let ts = start_server(Db::Sqlite).await;
    let url = format!("{}/v1/health", ts.url);
    let given = http()
        .get(&url)
        .header("x-request-id", "lb-1234_abc.9")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "lb-1234_abc.9");
    // One that would put spaces or control bytes in the log is replaced.
    let odd = http()
        .get(&url)
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    let made = odd.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(made, "a b");
    assert_eq!(made.len(), 32);
    // Errors carry one too, and two requests get different ids.
    let e1 = http()
        .get(format!("{}/v1/nowhere", ts.url))
        .send()
        .await
        .unwrap();
    let e2 = http()
        .get(format!("{}/v1/nowhere", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(e1.status(), 404);
    assert_ne!(e1.headers()["x-request-id"], e2.headers()["x-request-id"]);
    ts.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_route_templates_never_ids() {
    let ts = start_server(Db::Sqlite).await;
    let admin = ts.admin().await;
    let token = admin.token().unwrap().to_string();
    let secret_id = Uuid::new_v4().to_string();
    for _ in 0..3 {
        let r = http()
            .get(format!("{}/v1/doctors/{secret_id}", ts.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = http()
        .get(format!("{}/v1/doctors?q=Zebulon", ts.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = http()
        .get(format!("{}/v1/metrics", ts.url))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.text().await.unwrap();
    assert!(
        text.contains(
            "clinvault_http_requests_total{method=\"GET\",route=\"/v1/doctors/{id}\",status=\"404\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains(
        "clinvault_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/doctors\"} 1"
    ));
    // The first admin's registration and login appended to the ledger.
    let size: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("clinvault_ledger_size "))
        .expect("ledger size")
        .parse()
        .unwrap();
    assert!(size >= 1, "{text}");
    for needle in [secret_id.as_str(), "Zebulon", "admin@clinic.test", &token] {
        assert!(!text.contains(needle), "metrics leak {needle}");
    }
    for name in [
        "clinvault_chunk_bytes_in_total",
        "clinvault_chunk_bytes_out_total",
        "clinvault_otp_sent_total",
        "clinvault_otp_send_failed_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} counter")), "{name}");
    }
    ts.handle.shutdown().await.unwrap();
}

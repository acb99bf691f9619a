//! With `[mail]` set, codes go out over SMTP (lettre) instead of the outbox folder. The SMTP
//! server here is a minimal loopback sink that records what it is sent.

mod common;

use std::sync::{Arc, Mutex};

use clinvault::config::MailConfig;
use common::{Db, start_with};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Accepts SMTP sessions and keeps each message's DATA.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut in_data = false;
                let mut msg = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            store.lock().unwrap().push(std::mem::take(&mut msg));
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            msg.push_str(&line);
                            msg.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_go_out_over_smtp_when_configured() {
    let (port, got) = smtp_sink().await;
    let ts = start_with(Db::Sqlite, |c| {
        c.mail = Some(MailConfig {
            smtp_host: "127.0.0.1".into(),
            smtp_port: port,
            security: "none".into(),
            from: "Clinic <noreply@clinic.test>".into(),
            ..MailConfig::default()
        })
    })
    .await;
    let c = ts.client();
    c.verify_email("smtp@clinic.test").await.unwrap();
    let msgs = got.lock().unwrap().clone();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("To: smtp@clinic.test"), "{}", msgs[0]);
    let code = common::six_digits(&msgs[0]);
    assert_eq!(code.len(), 6);
    let outbox = ts.dir.path().join("outbox");
    assert!(
        !outbox.exists() || std::fs::read_dir(&outbox).unwrap().next().is_none(),
        "nothing in the file outbox"
    );
    ts.handle.shutdown().await.unwrap();
}

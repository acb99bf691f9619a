//! TLS via rustls when `tls_cert` / `tls_key` are set; the client trusts a given CA only.

mod common;

use clinvault::client::{ApiClient, ClientError};
use common::{Db, TEST_KDF, start_with};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/key.pem");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_pinned_ca() {
    let ts = start_with(Db::Sqlite, |c| {
        c.server.tls_cert = CERT.into();
        c.server.tls_key = KEY.into();
    })
    .await;
    assert!(ts.url.starts_with("https://"), "{}", ts.url);
    let pem = std::fs::read(CERT).unwrap();
    let c = ApiClient::new(&ts.url, false, TEST_KDF)
        .unwrap()
        .with_ca_pem(&pem)
        .unwrap();
    assert_eq!(c.health().await.unwrap().status, "ok");
    // The whole account flow works over it.
    let code = ts.handle.admin_enrollment_code.clone().unwrap();
    c.register_admin(&code, "a@clinic.test", "Ann Admin", common::PASSWORD)
        .await
        .unwrap();
    let mut c = c;
    c.login("a@clinic.test", common::PASSWORD).await.unwrap();
    c.me().await.unwrap();
    // Without that CA the certificate is not trusted.
    let stranger = ApiClient::new(&ts.url, false, TEST_KDF).unwrap();
    assert!(matches!(
        stranger.health().await,
        Err(ClientError::Network(_))
    ));
    // Plain HTTP to the TLS port gets nowhere.
    let plain = ApiClient::new(&ts.url.replace("https", "http"), false, TEST_KDF).unwrap();
    assert!(plain.health().await.is_err());
    assert!(
        ApiClient::new(&ts.url, false, TEST_KDF)
            .unwrap()
            .with_ca_pem(b"not a certificate")
            .is_err()
    );
    ts.handle.shutdown().await.unwrap();
}

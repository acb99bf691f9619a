//! Issue 16 part 2 in the terminal client, driven through `update` with every effect run
//! against a real server: the doctor sees "submitted by station … for Dr …" under the report
//! list and in the viewer once the report is checked; a station has no Reports pane.

mod common;

use ratatui::crossterm::event::KeyCode;

use clinvault::api::{OrderRequest, Role};
use clinvault::client::station::upload_for_order;
use clinvault::client::upload::UploadOptions;
use clinvault::tui::state::{Pane, Popup};
use common::Db;
use common::clinic::{clinic_with, user, write_file};
use common::tui::{log_in, new_app, press, screen_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_sees_the_station_and_the_order_station_sees_no_reports() {
    let c = clinic_with(Db::Sqlite, |_| {}).await;
    let admin = c.ts.login("admin@clinic.test").await;
    c.ts.staff(&admin, Role::Station, "lab1@clinic.test", "Lab-1", "")
        .await;
    let station = user(&c.ts, "lab1@clinic.test").await;
    c.doc
        .c
        .create_order(&OrderRequest {
            station: "Lab-1".into(),
            patient_id: c.pat.id,
            days: None,
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "potassium.txt",
        b"K+ 4.1 mmol/l\nSTATION-MARKER\n",
    );
    let orders = station.c.orders().await.unwrap().orders;
    let l = station.ledger().await.unwrap();
    upload_for_order(
        &station.c,
        &station.me,
        &l,
        &orders[0],
        &file,
        &UploadOptions {
            state_dir: station.state.path(),
            chunk_size: 4096,
            transfers: 1,
            title: "Potassium".into(),
            note: String::new(),
            cancel: None,
            progress: None,
        },
        None,
    )
    .await
    .unwrap();

    let origin = "submitted by station Lab-1 for Dr Greg House";
    let mut doc = new_app(&c.ts);
    log_in(&mut doc, "house@clinic.test").await;
    press(&mut doc, KeyCode::Char('4')).await;
    assert_eq!(doc.reports.rows.len(), 1, "{:?}", doc.reports.error);
    // Listed and opened (signature, ledger, order): the line under the list says who and for whom.
    let screen = screen_text(&doc);
    assert!(
        screen.contains("Potassium") && screen.contains(origin),
        "{screen}"
    );
    // The viewer says it too, over the report's text.
    press(&mut doc, KeyCode::Enter).await;
    let Some(Popup::Viewer(v)) = &doc.popup else {
        panic!("the viewer opens: {:?}", doc.status.error)
    };
    assert_eq!(v.origin.as_deref(), Some(origin));
    let screen = screen_text(&doc);
    assert!(
        screen.contains("STATION-MARKER") && screen.contains(origin),
        "{screen}"
    );

    // The station: no Reports pane; its Ledger shows the order.
    let mut st = new_app(&c.ts);
    log_in(&mut st, "lab1@clinic.test").await;
    assert!(!st.panes().contains(&Pane::Reports), "{:?}", st.panes());
    assert_eq!(st.pane, Pane::Ledger);
    press(&mut st, KeyCode::Char('4')).await;
    assert_ne!(st.pane, Pane::Reports);
    let screen = screen_text(&st);
    assert!(screen.contains("upload order: station you"), "{screen}");
    c.ts.handle.shutdown().await.unwrap();
}

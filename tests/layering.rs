//! Issue 13 point 6: route files call `server/store/` for their SQL. A source scan is the honest
//! check for a layering rule. Every route file has moved, so the exempt list is empty.

use std::path::Path;

/// Route files whose SQL has not moved to `server/store/` yet: none any more. Never grow it.
const EXEMPT: &[&str] = &[];

/// Whether the source holds a query call (`sqlx::query`, `query_scalar`, `query_as`…).
fn has_sql(src: &str) -> bool {
    src.contains("sqlx::query")
}

#[test]
fn scan_finds_a_query() {
    // The scan itself must see the forms the route files used.
    assert!(has_sql("let n: i64 = sqlx::query_scalar(\"SELECT 1\")"));
    assert!(has_sql("sqlx::query(\"UPDATE reports\")"));
    assert!(!has_sql(
        "crate::server::store::reports::load_report(conn, id)"
    ));
}

#[test]
fn routes_hold_no_sql_outside_the_exempt_list() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/routes");
    let mut offenders = Vec::new();
    let mut stale = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("src/server/routes is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        seen += 1;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let src = std::fs::read_to_string(&path).expect("route file is UTF-8");
        match (has_sql(&src), EXEMPT.contains(&name.as_str())) {
            (true, false) => offenders.push(name),
            (false, true) => stale.push(name),
            _ => {}
        }
    }
    assert!(
        seen >= 10,
        "found only {seen} route files under {}",
        dir.display()
    );
    assert!(
        offenders.is_empty(),
        "route files with `sqlx::query` (move the SQL into src/server/store/): {offenders:?}"
    );
    assert!(
        stale.is_empty(),
        "exempt route files without SQL any more (drop them from EXEMPT): {stale:?}"
    );
}

#[test]
fn report_and_chunk_routes_are_not_exempt() {
    for f in ["reports.rs", "chunks.rs"] {
        assert!(!EXEMPT.contains(&f), "{f} must stay free of SQL");
    }
}

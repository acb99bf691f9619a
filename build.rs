//! Puts the git commit into `clinvault --version` when the source is a git checkout, and
//! embeds the SQL migrations (without sqlx's macros, whose build compiles a second copy of
//! the SQLite and PostgreSQL drivers for the host).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

fn main() {
    embed_migrations();
    let version = env!("CARGO_PKG_VERSION");
    println!("cargo:rerun-if-changed=build.rs");
    let git = Path::new(".git");
    if git.join("HEAD").exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        // The branch's ref moves on every commit; HEAD itself only on a checkout.
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(r) = head.trim().strip_prefix("ref: ")
            && git.join(r).exists()
        {
            println!("cargo:rerun-if-changed=.git/{r}");
        }
        if git.join("packed-refs").exists() {
            println!("cargo:rerun-if-changed=.git/packed-refs");
        }
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let long = match commit {
        Some(c) => format!("{version} (commit {c})"),
        None => version.to_string(),
    };
    println!("cargo:rustc-env=CLINVAULT_VERSION={long}");
}

/// `$OUT_DIR/migrations.rs`: per backend, `(version, description, sql)` for every
/// `migrations/BACKEND/NNNN_description.sql`, in version order.
fn embed_migrations() {
    println!("cargo:rerun-if-changed=migrations");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut code = String::new();
    for backend in ["sqlite", "postgres"] {
        let dir = Path::new(&root).join("migrations").join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .map(|p| {
                let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                let (version, description) = stem
                    .split_once('_')
                    .unwrap_or_else(|| panic!("{}: name it NNNN_description.sql", p.display()));
                let version: i64 = version
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: name it NNNN_description.sql", p.display()));
                (
                    version,
                    description.replace('_', " "),
                    p.display().to_string(),
                )
            })
            .collect();
        files.sort();
        let _ = writeln!(
            code,
            "pub const {}: &[(i64, &str, &str)] = &[",
            backend.to_uppercase()
        );
        for (version, description, path) in files {
            let _ = writeln!(
                code,
                "    ({version}, {description:?}, include_str!({path:?})),"
            );
        }
        code.push_str("];\n");
    }
    std::fs::write(Path::new(&out_dir).join("migrations.rs"), code).expect("write migrations.rs");
}

//! What users expect of a Rust CLI: `--version` with the commit, shell completions, man pages,
//! and a config check that names a misspelled key. Runs the built binary.

use std::path::Path;
use std::process::{Command, Output};

fn clinvault(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clinvault"))
        .args(args)
        // No settings from the caller's environment.
        .env_remove("CLINVAULT_CONFIG")
        .output()
        .expect("run clinvault")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn version_names_the_release() {
    let o = clinvault(&["--version"]);
    assert!(o.status.success());
    let v = text(&o.stdout);
    assert!(
        v.starts_with(&format!("clinvault {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
}

#[test]
fn bash_completion_completes_subcommands() {
    let o = clinvault(&["completions", "bash"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("clinvault.bash");
    std::fs::write(&script, &o.stdout).expect("write script");
    // What bash does on `clinvault se<Tab>` and `clinvault admin <Tab>`.
    let probe = format!(
        "source {}; \
         COMP_WORDS=(clinvault se); COMP_CWORD=1; COMP_LINE='clinvault se'; COMP_POINT=12; \
         _clinvault clinvault se clinvault; echo \"1:${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(clinvault admin ''); COMP_CWORD=2; COMP_LINE='clinvault admin '; COMP_POINT=16; \
         _clinvault clinvault '' admin; echo \"2:${{COMPREPLY[*]}}\"",
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .expect("run bash");
    let shown = text(&out.stdout);
    let first = shown.lines().find(|l| l.starts_with("1:")).unwrap_or("");
    assert!(first.contains("serve"), "{shown}\n{}", text(&out.stderr));
    let second = shown.lines().find(|l| l.starts_with("2:")).unwrap_or("");
    for sub in ["invite", "backup", "restore"] {
        assert!(second.contains(sub), "{sub} missing: {shown}");
    }
}

#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clinvault"))
        .args(["completions", "zsh"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn man_pages_render() {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = clinvault(&["manpages", &dir.path().display().to_string()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for page in [
        "clinvault.1",
        "clinvault-serve.1",
        "clinvault-admin-invite.1",
        "clinvault-grant-confirm.1",
    ] {
        let body = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(body.contains(".TH"), "{page} is not a man page");
    }
    let top = std::fs::read_to_string(dir.path().join("clinvault.1")).expect("clinvault.1");
    assert!(top.contains("serve") && top.contains("download"), "{top}");
    // `man -l` where man is installed: the page renders without troff errors.
    if let Ok(out) = Command::new("man")
        .args(["-l", "-Tutf8"])
        .arg(dir.path().join("clinvault-serve.1"))
        .env("MANWIDTH", "80")
        .output()
    {
        // Bold as overstrikes (`-\x08-`) when the output is not a terminal.
        let mut shown = String::new();
        for c in text(&out.stdout).chars() {
            if c == '\x08' {
                shown.pop();
            } else {
                shown.push(c);
            }
        }
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(shown.contains("--listen"), "{shown}");
        assert!(shown.contains("clinvault serve [--data]"), "{shown}");
    }
}

#[test]
fn config_check_passes_the_example_and_names_a_misspelled_key() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let o = clinvault(&["config", "check", &example.display().to_string()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let shown = text(&o.stdout);
    assert!(shown.contains("is valid"), "{shown}");
    assert!(shown.contains("timezone = \"Europe/Berlin\""), "{shown}");

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[client]\nsever = \"https://clinic.example\"\n[mail]\nsmtp_host = \"x\"\npassword = \"hunter2-smtp\"\n",
    )
    .expect("write");
    let o = clinvault(&["config", "check", &bad.display().to_string()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("unknown key `sever` in [client]; did you mean `server`?"),
        "{err}"
    );

    // The same refusal at every start, not only in `config check`.
    let o = clinvault(&[
        "--config",
        &bad.display().to_string(),
        "serve",
        "--data",
        &dir.path().join("d").display().to_string(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("`sever`"), "{}", text(&o.stderr));
    assert!(!dir.path().join("d").exists(), "nothing started");

    // Secrets are not printed.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[mail]\nsmtp_host = \"x\"\npassword = \"hunter2-smtp\"\n[server]\ndatabase_url = \"postgres://cv:pw-db-secret@db/cv\"\n").expect("write");
    let o = clinvault(&["config", "check", &good.display().to_string()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let shown = text(&o.stdout);
    assert!(
        !shown.contains("hunter2-smtp") && !shown.contains("pw-db-secret"),
        "{shown}"
    );
}

/// Every subcommand's line in `--help` says what that command does: a doc comment that
/// slid onto its neighbour when commands were added leaves one line blank and another wrong.
#[test]
fn every_subcommand_has_its_own_help_line() {
    let o = clinvault(&["--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(commands.len() > 20, "{help}");
    for line in &commands {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default();
        let about: Vec<&str> = words.collect();
        assert!(!about.is_empty(), "`{name}` has no help line:\n{help}");
    }
    let login = commands
        .iter()
        .find(|l| l.trim_start().starts_with("login "))
        .expect("login listed");
    assert!(login.contains("Log in"), "{login}");
    let accept = commands
        .iter()
        .find(|l| l.trim_start().starts_with("accept-key "))
        .expect("accept-key listed");
    assert!(!accept.contains("Log in"), "{accept}");
}

//! The real binary in tmux at 80×24 on the embedded demo, as a newcomer uses it: wait for the
//! demo data, log in as the demo patient, book a slot, see it, quit cleanly. Demo KDF
//! parameters are lowered through the config's environment variables (tests only).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(&self, cmd: &str) {
        self.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "cv",
            "-x",
            "80",
            "-y",
            "24",
            cmd,
        ]);
        self.run(&["set-option", "-s", "escape-time", "0"]);
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (apt-get install tmux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "cv"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "cv"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn literal(&self, text: &str) {
        self.run(&["send-keys", "-t", "cv", "-l", text]);
    }

    /// `q`, and `y` if it asks because requests are still running (a slow machine); then
    /// the shell's line with the exit status.
    fn quit(&self) -> String {
        self.keys(&["q"]);
        let s = self.wait("a clean exit or the quit question", |s| {
            s.contains("CLINVAULT-EXIT=") || s.contains("Quit anyway?")
        });
        if s.contains("CLINVAULT-EXIT=") {
            return s;
        }
        self.keys(&["y"]);
        self.wait("a clean exit", |s| s.contains("CLINVAULT-EXIT="))
    }

    /// Polls the screen until `pred` holds; the limit only guards against a hang.
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("never saw {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// A row of the day's list: `HH:MM free`.
fn lists_a_free_slot(line: &str) -> bool {
    line.match_indices(" free").any(|(i, _)| {
        let b = line.as_bytes();
        i >= 5
            && b[i - 5].is_ascii_digit()
            && b[i - 4].is_ascii_digit()
            && b[i - 3] == b':'
            && b[i - 2].is_ascii_digit()
            && b[i - 1].is_ascii_digit()
    })
}

/// One demo at a time: each seeds a clinic with Argon2 for every account, and two at once on
/// a loaded 2-core machine can outlast the waits.
static ONE_DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The binary on a fresh embedded demo in its own tmux server at 80×24, or `None` (with a
/// note) where tmux is missing outside CI.
fn demo_in_tmux(label: &str) -> Option<Demo> {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is required in CI (apt-get install tmux)"
        );
        eprintln!("skipping the tmux end-to-end test: tmux is not installed");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = env!("CARGO_BIN_EXE_clinvault");
    let state = dir.path().join("state");
    let kdf = "CLINVAULT_SERVER__KDF__M_KIB=256 CLINVAULT_SERVER__KDF__T=1 CLINVAULT_SERVER__KDF__P=1 \
               CLINVAULT_CLIENT__KDF_FLOOR__M_KIB=256 CLINVAULT_CLIENT__KDF_FLOOR__T=1 CLINVAULT_CLIENT__KDF_FLOOR__P=1";
    let cmd = format!(
        "cd {} && env -u NO_COLOR TERM=xterm-256color {kdf} CLINVAULT_CLIENT__STATE_DIR={} {}; echo CLINVAULT-EXIT=$?; sleep 60",
        shell_quote(dir.path()),
        shell_quote(&state),
        shell_quote(Path::new(bin))
    );
    let t = Tmux {
        socket: format!("clinvault-e2e-{label}-{}", std::process::id()),
    };
    t.start(&cmd);
    Some(Demo { t, dir, cmd, state })
}

struct Demo {
    t: Tmux,
    dir: tempfile::TempDir,
    /// The shell command that started the client, to start it again.
    cmd: String,
    state: std::path::PathBuf,
}

#[test]
fn demo_login_book_and_quit_in_tmux() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let Some(Demo { t, dir, cmd, state }) = demo_in_tmux("patient") else {
        return;
    };

    let s = t.wait("the login screen", |s| s.contains("clinvault — log in"));
    assert!(
        s.contains("amber lantern quietly folds the map"),
        "demo password shown:\n{s}"
    );
    t.wait("the demo data", |s| s.contains("Demo data ready"));

    t.literal("pat.jones@patients.demo");
    t.keys(&["Tab"]);
    t.literal("amber lantern quietly folds the map");
    t.keys(&["Enter"]);
    let s = t.wait("the doctors", |s| s.contains("Doctors · 12"));
    assert!(
        s.contains("pat.jones@patients.demo (patient)"),
        "status bar:\n{s}"
    );

    // The third booking of the list is the one made here (the demo has made two).
    t.keys(&["3"]);
    let before = t.wait("the bookings", |s| s.contains("Bookings · "));
    let count = |s: &str| s.lines().filter(|l| l.contains(" booked ")).count();
    let n = count(&before);

    t.keys(&["1"]);
    t.wait("the doctors again", |s| s.contains("Doctors · 12"));
    t.keys(&["Enter"]);
    // The day's list itself ("09:00 free"), not the legend's "free slots": Enter before the
    // month is loaded finds no rows.
    t.wait("the calendar", |s| {
        s.contains("Calendar · ") && s.lines().any(lists_a_free_slot)
    });
    // Into the day's slots; a key pressed while they load would be lost, so wait for them.
    // The demo's completed visit began minutes ago, so today may list it above the free
    // slots: move down to the first free one.
    t.keys(&["Enter"]);
    let on_free = |s: &str| s.lines().any(|l| l.contains("› ") && l.contains(" free"));
    t.wait("the day's list", |s| s.contains("› "));
    for _ in 0..10 {
        if on_free(&t.screen()) {
            break;
        }
        t.keys(&["j"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    t.wait("a free slot selected", |s| {
        s.contains("Enter book") && on_free(s)
    });
    t.keys(&["Enter"]);
    t.wait("the confirmation", |s| {
        s.contains("Confirm") && s.contains("Book ")
    });
    t.keys(&["y"]);
    t.wait("the booking", |s| s.contains("Booked "));
    t.keys(&["3"]);
    let s = t.wait("one more booking", |s| {
        s.contains("Bookings · ") && count(s) == n + 1
    });
    assert!(!s.contains('✗'), "no error:\n{s}");

    // The demo's reports: one released (its title decrypted here), one waiting for a code.
    t.keys(&["4"]);
    let s = t.wait("the reports", |s| {
        s.contains("Reports · 2") && s.contains("Echocardiogram")
    });
    assert!(s.contains("awaiting code"), "both states:\n{s}");
    assert!(s.contains("ledger ✓"), "the ledger verified:\n{s}");

    let s = t.quit();
    assert!(s.contains("CLINVAULT-EXIT=0"), "exit status:\n{s}");
    assert!(
        !s.contains("Bookings ·"),
        "the alternate screen is gone:\n{s}"
    );
    assert!(
        dir.path()
            .join("clinvault-data")
            .join("demo-seeded")
            .exists()
    );
    let log = std::fs::read_to_string(state.join("clinvault-tui.log")).unwrap_or_default();
    assert!(!log.contains("amber lantern"), "no password in the log");

    // A second start on the same folder seeds nothing twice and keeps the booking.
    t.run(&["kill-session", "-t", "cv"]);
    t.start(&cmd);
    t.wait("the demo data again", |s| s.contains("Demo data ready"));
    t.literal("pat.jones@patients.demo");
    t.keys(&["Tab"]);
    t.literal("amber lantern quietly folds the map");
    t.keys(&["Enter"]);
    t.wait("the same twelve doctors", |s| s.contains("Doctors · 12"));
    t.keys(&["3"]);
    t.wait("the same bookings", |s| {
        s.contains("Bookings · ") && count(s) == n + 1
    });
    // Ctrl-C leaves as cleanly as q.
    t.keys(&["C-c"]);
    let s = t.wait("a clean exit", |s| s.contains("CLINVAULT-EXIT="));
    assert!(s.contains("CLINVAULT-EXIT=0"), "exit status:\n{s}");
}

/// Issue 14: reception books a named patient with a named doctor through `n`; then the
/// demo doctor reads a report in the viewer (point 11: in memory, nothing on disk); quit.
#[test]
fn reception_books_with_the_new_booking_flow_in_tmux() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let Some(Demo { t, dir: _dir, .. }) = demo_in_tmux("desk") else {
        return;
    };
    t.wait("the login screen", |s| s.contains("clinvault — log in"));
    t.wait("the demo data", |s| s.contains("Demo data ready"));
    t.literal("desk@clinic.demo");
    t.keys(&["Tab"]);
    t.literal("amber lantern quietly folds the map");
    t.keys(&["Enter"]);
    t.wait("the doctors", |s| s.contains("Doctors · 12"));
    t.keys(&["3"]);
    t.wait("the bookings", |s| {
        s.contains("Bookings · ") && s.contains("n new")
    });
    t.keys(&["n"]);
    t.wait("the patient step", |s| s.contains("New booking 1/2"));
    t.literal("Maria");
    t.wait("Maria selected", |s| s.contains("› Maria Rossi"));
    t.keys(&["Enter"]);
    t.wait("the doctor step", |s| s.contains("New booking 2/2"));
    t.literal("herz");
    t.wait("Dana selected", |s| s.contains("› Dana Herz"));
    t.keys(&["Enter"]);
    t.wait("the confirmation", |s| {
        s.contains("Confirm") && s.contains("with Dana Herz for Maria Rossi")
    });
    t.keys(&["y"]);
    let s = t.wait("the booking", |s| s.contains("Booked "));
    assert!(!s.contains('✗'), "no error:\n{s}");
    // The list reloads after the booking; wait for it rather than read it mid-load.
    t.wait("the booking in the list", |s| {
        !s.contains("loading…")
            && s.lines().any(|l| {
                l.contains("Dana Herz") && l.contains("Maria Rossi") && l.contains("booked")
            })
    });
    // Reception has no Reports pane: the doctor reads one.
    t.keys(&["L"]);
    t.wait("the login screen again", |s| {
        s.contains("clinvault — log in")
    });
    t.keys(&["C-u"]);
    t.literal("dana.herz@clinic.demo");
    t.keys(&["Tab"]);
    t.literal("amber lantern quietly folds the map");
    t.keys(&["Enter"]);
    t.wait("the doctor logged in", |s| {
        s.contains("dana.herz@clinic.demo (doctor)")
    });
    t.keys(&["4"]);
    t.wait("the reports, titles checked", |s| {
        s.contains("Echocardiogram") && s.contains("Blood panel")
    });
    t.keys(&["Enter"]);
    let s = t.wait("the viewer", |s| {
        s.contains("read in memory, nothing on disk") && s.contains("Demo data.")
    });
    assert!(s.contains("SHA-256 ") && s.contains("plain text"), "{s}");
    t.keys(&["Escape"]);
    t.wait("the list again", |s| {
        !s.contains("read in memory") && s.contains("Reports · ")
    });
    let s = t.quit();
    assert!(s.contains("CLINVAULT-EXIT=0"), "exit status:\n{s}");
}

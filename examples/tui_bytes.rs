//! Bandwidth benchmark of the terminal client (not a test): runs the real binary in a
//! pseudo-terminal (util-linux `script`) at 80×24 on the embedded demo in a temporary folder
//! and counts the bytes it writes: start-up to the first full frame, per list-move keystroke,
//! per pane switch, and 10 s idle. Also the time from spawn to the first frame.
//!
//! cargo build && cargo run --example tui_bytes
//! (CLINVAULT_BENCH_REAL_KDF=1 seeds with the shipped Argon2 parameters; the default lowers
//! them for the demo accounts so the run is short — the figures measured do not depend on it.)

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const END_SYNC: &[u8] = b"\x1b[?2026l";

struct Out {
    bytes: Vec<u8>,
    first_frame: Option<(Instant, usize)>,
}

fn count(out: &Arc<Mutex<Out>>) -> usize {
    out.lock().map(|o| o.bytes.len()).unwrap_or(0)
}

fn contains(out: &Arc<Mutex<Out>>, from: usize, needle: &str) -> bool {
    let o = out.lock().expect("lock");
    let hay = &o.bytes[from.min(o.bytes.len())..];
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn wait_for(out: &Arc<Mutex<Out>>, from: usize, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !contains(out, from, needle) {
        assert!(Instant::now() < deadline, "never saw {needle:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until nothing arrives for `quiet`, returns the count then.
fn settle(out: &Arc<Mutex<Out>>, quiet: Duration) -> usize {
    let mut last = count(out);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let n = count(out);
        if n != last {
            last = n;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return n;
        }
    }
}

fn main() {
    let bin = std::env::var("CLINVAULT_BIN").unwrap_or_else(|_| {
        let exe = std::env::current_exe().expect("exe");
        // target/debug/examples/tui_bytes -> target/debug/clinvault
        exe.parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("clinvault").display().to_string())
            .expect("target dir")
    });
    let dir = std::env::temp_dir().join(format!("clinvault-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut env: Vec<(&str, String)> = vec![
        ("TERM", "xterm-256color".into()),
        (
            "CLINVAULT_CLIENT__STATE_DIR",
            dir.join("state").display().to_string(),
        ),
    ];
    if std::env::var_os("CLINVAULT_BENCH_REAL_KDF").is_none() {
        for (k, v) in [
            ("CLINVAULT_SERVER__KDF__M_KIB", "256"),
            ("CLINVAULT_SERVER__KDF__T", "1"),
            ("CLINVAULT_SERVER__KDF__P", "1"),
            ("CLINVAULT_CLIENT__KDF_FLOOR__M_KIB", "256"),
            ("CLINVAULT_CLIENT__KDF_FLOOR__T", "1"),
            ("CLINVAULT_CLIENT__KDF_FLOOR__P", "1"),
        ] {
            env.push((k, v.into()));
        }
    }
    // `stty` sizes the pty before the client starts; its own time is part of the figure.
    let inner = format!("stty cols 80 rows 24; exec '{bin}'");
    let t0 = Instant::now();
    let mut child = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .current_dir(&dir)
        .envs(env)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let out = Arc::new(Mutex::new(Out {
        bytes: Vec::new(),
        first_frame: None,
    }));
    let reader = {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut o = out.lock().expect("lock");
                o.bytes.extend_from_slice(&buf[..n]);
                if o.first_frame.is_none()
                    && let Some(i) = o.bytes.windows(END_SYNC.len()).position(|w| w == END_SYNC)
                {
                    o.first_frame = Some((Instant::now(), i + END_SYNC.len()));
                }
            }
        })
    };
    let mut send = |s: &[u8]| {
        stdin.write_all(s).expect("write");
        stdin.flush().expect("flush");
    };

    wait_for(&out, 0, "log in");
    let (ff_at, ff_bytes) = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(f) = out.lock().expect("lock").first_frame {
                break f;
            }
            assert!(Instant::now() < deadline, "no synchronized frame");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let first_frame_ms = ff_at.duration_since(t0).as_secs_f64() * 1000.0;
    wait_for(&out, 0, "Demo data ready");
    let seeded_s = t0.elapsed().as_secs_f64();
    let start_total = settle(&out, Duration::from_millis(500));

    send(b"pat.jones@patients.demo\t");
    send(b"amber lantern quietly folds the map\r");
    let mark = count(&out);
    wait_for(&out, mark, "Doctors");
    let _ = settle(&out, Duration::from_millis(800));

    let mut per_key = Vec::new();
    for k in [b"j", b"j", b"j", b"j", b"j", b"k", b"k", b"k", b"j", b"j"] {
        let before = count(&out);
        send(k);
        let after = settle(&out, Duration::from_millis(300));
        per_key.push(after - before);
    }
    let mut per_pane = Vec::new();
    for k in [b"3", b"1", b"\t", b"\t", b"1"] {
        let before = count(&out);
        send(k);
        let after = settle(&out, Duration::from_millis(600));
        per_pane.push(after - before);
    }
    let idle_from = settle(&out, Duration::from_millis(500));
    std::thread::sleep(Duration::from_secs(10));
    let idle = count(&out) - idle_from;

    send(b"q");
    let _ = child.wait();
    let _ = reader.join();
    let _ = std::fs::remove_dir_all(&dir);

    let avg = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    println!("clinvault TUI in a pty at 80x24, embedded demo");
    println!("time from spawn to first frame      {first_frame_ms:.0} ms");
    println!("bytes to the first full frame       {ff_bytes}");
    println!("demo data ready after               {seeded_s:.1} s");
    println!("bytes until seeded and quiet        {start_total}");
    println!(
        "bytes per list-move keystroke       avg {:.0}, max {} ({per_key:?})",
        avg(&per_key),
        per_key.iter().max().unwrap_or(&0)
    );
    println!(
        "bytes per pane switch               avg {:.0}, max {} ({per_pane:?})",
        avg(&per_pane),
        per_pane.iter().max().unwrap_or(&0)
    );
    println!("bytes while idle for 10 s           {idle}");
}

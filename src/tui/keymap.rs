//! Keys → commands, from the `[keys]` table of the config over built-in defaults
//! (DESIGN.md §9). Each command carries its description and the panes it acts in, so the help
//! pane and the hint line come from the same table the keys are resolved with.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::config::KeyBinding;
use crate::tui::state::Pane;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmd {
    Quit,
    Help,
    Palette,
    NextPane,
    PrevPane,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Select,
    Search,
    Back,
    Refresh,
    PrevMonth,
    NextMonth,
    CancelBooking,
    CheckIn,
    Complete,
    Logout,
    Password,
    RecoveryKit,
    /// Issue 15: set up the second factor (staff).
    Totp,
    Upload,
    Download,
    Verify,
    Open,
    Export,
    AskConsent,
    Grants,
    Trail,
    PatientReports,
    EnterCode,
    Resend,
    Messages,
    NewBooking,
    /// Issue 16: break the glass on a patient (emergency-team doctors).
    BreakGlass,
    /// Issue 16: the break-glass requests (yours, or on you): fetch, read, veto.
    Emergencies,
    Go(Pane),
}

/// Where a command acts; `None` means everywhere once logged in.
pub struct CmdInfo {
    pub cmd: Cmd,
    pub name: &'static str,
    pub desc: &'static str,
    pub panes: Option<&'static [Pane]>,
    pub defaults: &'static [&'static str],
}

const LISTS: &[Pane] = &[
    Pane::Doctors,
    Pane::Calendar,
    Pane::Bookings,
    Pane::Reports,
    Pane::Otp,
    Pane::Ledger,
    Pane::Mailbox,
    Pane::Help,
];
const REPORTS: &[Pane] = &[Pane::Reports];
const BOOKING_PANES: &[Pane] = &[Pane::Calendar, Pane::Bookings];
const CANCEL_PANES: &[Pane] = &[Pane::Calendar, Pane::Bookings, Pane::Reports];

/// Every command with its defaults. A new pane adds its `Go` row and its own commands here.
pub const COMMANDS: &[CmdInfo] = &[
    CmdInfo {
        cmd: Cmd::Quit,
        name: "quit",
        desc: "quit",
        panes: None,
        defaults: &["q"],
    },
    CmdInfo {
        cmd: Cmd::Help,
        name: "help",
        desc: "help: every key of this pane",
        panes: None,
        defaults: &["?", "F1"],
    },
    CmdInfo {
        cmd: Cmd::Palette,
        name: "palette",
        desc: "command palette",
        panes: None,
        defaults: &[":"],
    },
    CmdInfo {
        cmd: Cmd::NextPane,
        name: "next_pane",
        desc: "next pane",
        panes: None,
        defaults: &["Tab"],
    },
    CmdInfo {
        cmd: Cmd::PrevPane,
        name: "prev_pane",
        desc: "previous pane",
        panes: None,
        defaults: &["S-Tab"],
    },
    CmdInfo {
        cmd: Cmd::Go(Pane::Doctors),
        name: "pane_doctors",
        desc: "Doctors pane",
        panes: None,
        defaults: &["1"],
    },
    CmdInfo {
        cmd: Cmd::Go(Pane::Calendar),
        name: "pane_calendar",
        desc: "Calendar pane",
        panes: None,
        defaults: &["2"],
    },
    CmdInfo {
        cmd: Cmd::Go(Pane::Bookings),
        name: "pane_bookings",
        desc: "Bookings pane",
        panes: None,
        defaults: &["3"],
    },
    CmdInfo {
        cmd: Cmd::Go(Pane::Reports),
        name: "pane_reports",
        desc: "Reports pane",
        panes: None,
        defaults: &["4"],
    },
    CmdInfo {
        cmd: Cmd::Go(Pane::Otp),
        name: "pane_otp",
        desc: "OTP pane: codes to enter",
        panes: None,
        defaults: &["5"],
    },
    CmdInfo {
        cmd: Cmd::Go(Pane::Ledger),
        name: "pane_ledger",
        desc: "Ledger pane",
        panes: None,
        defaults: &["6"],
    },
    CmdInfo {
        cmd: Cmd::Go(Pane::Mailbox),
        name: "pane_mailbox",
        desc: "Mailbox pane (demo)",
        panes: None,
        defaults: &["7"],
    },
    CmdInfo {
        cmd: Cmd::Up,
        name: "up",
        desc: "move up",
        panes: Some(LISTS),
        defaults: &["k", "Up"],
    },
    CmdInfo {
        cmd: Cmd::Down,
        name: "down",
        desc: "move down",
        panes: Some(LISTS),
        defaults: &["j", "Down"],
    },
    CmdInfo {
        cmd: Cmd::Left,
        name: "left",
        desc: "previous day",
        panes: Some(&[Pane::Calendar]),
        defaults: &["h", "Left"],
    },
    CmdInfo {
        cmd: Cmd::Right,
        name: "right",
        desc: "next day",
        panes: Some(&[Pane::Calendar]),
        defaults: &["l", "Right"],
    },
    CmdInfo {
        cmd: Cmd::PageUp,
        name: "page_up",
        desc: "page up / previous week",
        panes: Some(LISTS),
        defaults: &["PageUp", "<C-u>"],
    },
    CmdInfo {
        cmd: Cmd::PageDown,
        name: "page_down",
        desc: "page down / next week",
        panes: Some(LISTS),
        defaults: &["PageDown", "<C-d>"],
    },
    CmdInfo {
        cmd: Cmd::PrevMonth,
        name: "prev_month",
        desc: "previous month",
        panes: Some(&[Pane::Calendar]),
        defaults: &["<", "["],
    },
    CmdInfo {
        cmd: Cmd::NextMonth,
        name: "next_month",
        desc: "next month",
        panes: Some(&[Pane::Calendar]),
        defaults: &[">", "]"],
    },
    CmdInfo {
        cmd: Cmd::Select,
        name: "select",
        desc: "open / book the slot / verify / enter the code",
        panes: Some(&[Pane::Doctors, Pane::Calendar, Pane::Reports, Pane::Otp]),
        defaults: &["Enter"],
    },
    CmdInfo {
        cmd: Cmd::Search,
        name: "search",
        desc: "search doctors (name or specialty) / filter the list",
        panes: Some(&[
            Pane::Doctors,
            Pane::Bookings,
            Pane::Reports,
            Pane::Ledger,
            Pane::Otp,
            Pane::Mailbox,
        ]),
        defaults: &["/"],
    },
    CmdInfo {
        cmd: Cmd::Back,
        name: "back",
        desc: "leave a field, close a popup (never changes data)",
        panes: None,
        defaults: &["Esc"],
    },
    CmdInfo {
        cmd: Cmd::Refresh,
        name: "refresh",
        desc: "reload",
        panes: None,
        defaults: &["r"],
    },
    CmdInfo {
        cmd: Cmd::CancelBooking,
        name: "cancel_booking",
        desc: "cancel the selected booking / stop the transfer",
        panes: Some(CANCEL_PANES),
        defaults: &["c"],
    },
    CmdInfo {
        cmd: Cmd::CheckIn,
        name: "check_in",
        desc: "check the patient in (reception)",
        panes: Some(BOOKING_PANES),
        defaults: &["i"],
    },
    CmdInfo {
        cmd: Cmd::Complete,
        name: "complete",
        desc: "mark the visit completed (doctor)",
        panes: Some(BOOKING_PANES),
        defaults: &["d"],
    },
    CmdInfo {
        cmd: Cmd::Upload,
        name: "upload",
        desc: "upload a file for one of your patients (doctor)",
        panes: Some(REPORTS),
        defaults: &["u"],
    },
    CmdInfo {
        cmd: Cmd::Download,
        name: "download",
        desc: "save (download and verify) the report",
        panes: Some(REPORTS),
        defaults: &["s"],
    },
    CmdInfo {
        cmd: Cmd::Export,
        name: "export",
        desc: "export a bundle for offline checks (holds the report key)",
        panes: Some(REPORTS),
        defaults: &["x"],
    },
    CmdInfo {
        cmd: Cmd::Verify,
        name: "verify",
        desc: "verify every check of the report",
        panes: Some(REPORTS),
        defaults: &["v"],
    },
    CmdInfo {
        cmd: Cmd::Open,
        name: "open",
        desc: "read the report here (checked, in memory, never on disk)",
        panes: Some(REPORTS),
        defaults: &["o"],
    },
    CmdInfo {
        cmd: Cmd::AskConsent,
        name: "ask_consent",
        desc: "ask the patient's consent to read it (doctor)",
        panes: Some(REPORTS),
        defaults: &["a"],
    },
    CmdInfo {
        cmd: Cmd::Grants,
        name: "grants",
        desc: "grants: confirm a key wrap, approve, revoke",
        panes: Some(REPORTS),
        defaults: &["g"],
    },
    CmdInfo {
        cmd: Cmd::Trail,
        name: "trail",
        desc: "the selected report's access trail, from the ledger",
        panes: Some(REPORTS),
        defaults: &["t"],
    },
    CmdInfo {
        cmd: Cmd::PatientReports,
        name: "patient_reports",
        desc: "one patient's reports, to ask consent (doctor)",
        panes: Some(REPORTS),
        defaults: &["f"],
    },
    CmdInfo {
        cmd: Cmd::EnterCode,
        name: "enter_code",
        desc: "type the selected code",
        panes: Some(&[Pane::Otp]),
        defaults: &["e"],
    },
    CmdInfo {
        cmd: Cmd::Resend,
        name: "resend",
        desc: "mail the selected code again",
        panes: Some(&[Pane::Otp]),
        defaults: &["R"],
    },
    CmdInfo {
        cmd: Cmd::NewBooking,
        name: "new_booking",
        desc: "new booking: patient, doctor, first free slot (reception)",
        panes: Some(&[Pane::Bookings]),
        defaults: &["n"],
    },
    CmdInfo {
        cmd: Cmd::Messages,
        name: "messages",
        desc: "message history, with times",
        panes: None,
        defaults: &["M"],
    },
    CmdInfo {
        cmd: Cmd::Logout,
        name: "logout",
        desc: "log out",
        panes: None,
        defaults: &["L"],
    },
    CmdInfo {
        cmd: Cmd::Password,
        name: "password",
        desc: "change your password (keys stay; other sessions end)",
        panes: None,
        defaults: &["P"],
    },
    CmdInfo {
        cmd: Cmd::RecoveryKit,
        name: "recovery_kit",
        desc: "new recovery kit: a code to set a new password if you forget yours",
        panes: None,
        defaults: &["K"],
    },
    CmdInfo {
        cmd: Cmd::Totp,
        name: "totp",
        desc: "set up the second factor (TOTP, staff): QR code, first code, recovery codes",
        panes: None,
        // Palette only: a rare command needs no key of its own.
        defaults: &[],
    },
    // Issue 16: break-glass.
    CmdInfo {
        cmd: Cmd::BreakGlass,
        name: "break_glass",
        desc: "break-glass on a patient (emergency team; logged, mailed)",
        panes: None,
        defaults: &["B"],
    },
    CmdInfo {
        cmd: Cmd::Emergencies,
        name: "emergencies",
        desc: "break-glass requests: yours (read) or on you (veto)",
        panes: None,
        defaults: &["E"],
    },
];

pub fn info(cmd: Cmd) -> Option<&'static CmdInfo> {
    COMMANDS.iter().find(|c| c.cmd == cmd)
}

/// One key with its modifiers, normalised so `S-a` and `A` are the same chord.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chord {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Chord {
    pub fn from_event(ev: &KeyEvent) -> Chord {
        let mut mods =
            ev.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        let code = match ev.code {
            KeyCode::BackTab => {
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            KeyCode::Char(c) => {
                // Shift is already in the character.
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::Char(c)
            }
            other => other,
        };
        Chord { code, mods }
    }

    /// `q`, `?`, `Enter`, `S-Tab`, `<C-d>`, `<A-x>`, `F1`, `Space`.
    pub fn parse(s: &str) -> Result<Chord, String> {
        let bad = || format!("key {s:?}: write it like q, Enter, S-Tab, <C-d>, F1");
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        if let Some(inner) = s.strip_prefix('<').and_then(|x| x.strip_suffix('>')) {
            rest = inner;
            loop {
                if let Some(r) = rest.strip_prefix("C-") {
                    mods |= KeyModifiers::CONTROL;
                    rest = r;
                } else if let Some(r) = rest.strip_prefix("A-") {
                    mods |= KeyModifiers::ALT;
                    rest = r;
                } else if let Some(r) = rest.strip_prefix("S-") {
                    mods |= KeyModifiers::SHIFT;
                    rest = r;
                } else {
                    break;
                }
            }
        } else if s == "S-Tab" {
            return Ok(Chord {
                code: KeyCode::BackTab,
                mods,
            });
        }
        let code = match rest {
            "Enter" => KeyCode::Enter,
            "Esc" => KeyCode::Esc,
            "Tab" if mods.contains(KeyModifiers::SHIFT) => {
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            "Tab" => KeyCode::Tab,
            "BackTab" => KeyCode::BackTab,
            "Up" => KeyCode::Up,
            "Down" => KeyCode::Down,
            "Left" => KeyCode::Left,
            "Right" => KeyCode::Right,
            "PageUp" => KeyCode::PageUp,
            "PageDown" => KeyCode::PageDown,
            "Home" => KeyCode::Home,
            "End" => KeyCode::End,
            "Backspace" => KeyCode::Backspace,
            "Delete" => KeyCode::Delete,
            "Space" => KeyCode::Char(' '),
            f if f.len() >= 2 && f.starts_with('F') => {
                let n: u8 = f[1..].parse().map_err(|_| bad())?;
                if !(1..=12).contains(&n) {
                    return Err(bad());
                }
                KeyCode::F(n)
            }
            c => {
                let mut chars = c.chars();
                match (chars.next(), chars.next()) {
                    (Some(ch), None) => {
                        if mods.contains(KeyModifiers::SHIFT) {
                            mods.remove(KeyModifiers::SHIFT);
                            KeyCode::Char(ch.to_ascii_uppercase())
                        } else {
                            KeyCode::Char(ch)
                        }
                    }
                    _ => return Err(bad()),
                }
            }
        };
        Ok(Chord { code, mods })
    }
}

impl fmt::Display for Chord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        let mut prefix = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            prefix.push_str("C-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            prefix.push_str("A-");
        }
        if prefix.is_empty() {
            f.write_str(&name)
        } else {
            write!(f, "<{prefix}{name}>")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("[keys] {0}: no such command (see config.example.toml)")]
    UnknownCommand(String),
    #[error("[keys] {command}: {why}")]
    BadKey { command: String, why: String },
    #[error("[keys] {key} is bound to both {first} and {second}")]
    Duplicate {
        key: String,
        first: &'static str,
        second: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct KeyMap {
    by_chord: HashMap<Chord, Cmd>,
    by_cmd: HashMap<Cmd, Vec<Chord>>,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap::from_config(&BTreeMap::new()).unwrap_or_else(|e| panic!("built-in keys: {e}"))
    }
}

impl KeyMap {
    /// The defaults, with each command named in `overrides` rebound to the keys given there.
    pub fn from_config(overrides: &BTreeMap<String, KeyBinding>) -> Result<KeyMap, KeymapError> {
        for name in overrides.keys() {
            if !COMMANDS.iter().any(|c| c.name == name) {
                return Err(KeymapError::UnknownCommand(name.clone()));
            }
        }
        let mut by_chord: HashMap<Chord, Cmd> = HashMap::new();
        let mut by_cmd: HashMap<Cmd, Vec<Chord>> = HashMap::new();
        for info in COMMANDS {
            let keys: Vec<String> = match overrides.get(info.name) {
                Some(b) => b.keys(),
                None => info.defaults.iter().map(|s| s.to_string()).collect(),
            };
            for k in keys {
                let chord = Chord::parse(&k).map_err(|why| KeymapError::BadKey {
                    command: info.name.into(),
                    why,
                })?;
                if let Some(prev) = by_chord.get(&chord).copied()
                    && prev != info.cmd
                {
                    return Err(KeymapError::Duplicate {
                        key: k,
                        first: self::info(prev).map(|i| i.name).unwrap_or("?"),
                        second: info.name,
                    });
                }
                by_chord.insert(chord, info.cmd);
                by_cmd.entry(info.cmd).or_default().push(chord);
            }
        }
        Ok(KeyMap { by_chord, by_cmd })
    }

    pub fn resolve(&self, ev: &KeyEvent) -> Option<Cmd> {
        self.by_chord.get(&Chord::from_event(ev)).copied()
    }

    /// The keys of `cmd` as shown to the user, e.g. `k/↑`.
    pub fn keys_of(&self, cmd: Cmd) -> String {
        self.by_cmd
            .get(&cmd)
            .map(|v| {
                v.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default()
    }

    /// The first key of `cmd`, for hints.
    pub fn first_key(&self, cmd: Cmd) -> String {
        self.by_cmd
            .get(&cmd)
            .and_then(|v| v.first())
            .map(|c| c.to_string())
            .unwrap_or_else(|| "—".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn defaults_resolve_vim_keys_and_arrows() {
        let m = KeyMap::default();
        assert_eq!(
            m.resolve(&key(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Cmd::Down)
        );
        assert_eq!(
            m.resolve(&key(KeyCode::Down, KeyModifiers::NONE)),
            Some(Cmd::Down)
        );
        assert_eq!(
            m.resolve(&key(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Cmd::PrevPane)
        );
        assert_eq!(
            m.resolve(&key(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            Some(Cmd::PageDown)
        );
        assert_eq!(
            m.resolve(&key(KeyCode::Char('L'), KeyModifiers::SHIFT)),
            Some(Cmd::Logout)
        );
        assert_eq!(
            m.resolve(&key(KeyCode::Char('z'), KeyModifiers::NONE)),
            None
        );
    }

    #[test]
    fn config_rebinds_and_refuses_duplicates_and_unknowns() {
        let mut o = BTreeMap::new();
        o.insert("quit".to_string(), KeyBinding::One("<C-q>".into()));
        let m = KeyMap::from_config(&o).unwrap();
        assert_eq!(
            m.resolve(&key(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Cmd::Quit)
        );
        assert_eq!(
            m.resolve(&key(KeyCode::Char('q'), KeyModifiers::NONE)),
            None
        );

        o.insert("help".to_string(), KeyBinding::Many(vec!["j".into()]));
        let err = KeyMap::from_config(&o).unwrap_err().to_string();
        assert!(err.contains("bound to both"), "{err}");

        let mut o = BTreeMap::new();
        o.insert("frobnicate".to_string(), KeyBinding::One("z".into()));
        assert!(KeyMap::from_config(&o).is_err());
        let mut o = BTreeMap::new();
        o.insert("quit".to_string(), KeyBinding::One("<C-toolong>".into()));
        assert!(KeyMap::from_config(&o).is_err());
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn keys_table_of_a_config_file_rebinds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[keys]\nquit = \"<C-q>\"\nup = [\"k\", \"Up\", \"<C-p>\"]\n",
        )
        .expect("write");
        let cfg = crate::config::load(Some(&path), &[]).expect("config loads");
        let m = KeyMap::from_config(&cfg.keys).expect("keys");
        let ev = |c, m| KeyEvent::new(c, m);
        assert_eq!(
            m.resolve(&ev(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Some(Cmd::Quit)
        );
        assert_eq!(
            m.resolve(&ev(KeyCode::Char('p'), KeyModifiers::CONTROL)),
            Some(Cmd::Up)
        );
        assert_eq!(m.keys_of(Cmd::Up), "k/↑/<C-p>", "help shows the live keys");
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let cfg = crate::config::load(Some(&example), &[]).expect("example loads");
        assert!(
            cfg.keys.is_empty(),
            "the example only documents the defaults"
        );
        assert_eq!(cfg.client.idle_lock_minutes, 10);
        assert!(!cfg.client.mouse);
    }
}

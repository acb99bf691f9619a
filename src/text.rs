//! Text from other people (names, titles, notes, specialty, bio, file names) and from the
//! server (error messages), made safe to show in a terminal, and the rules for what plain
//! text fields may hold.
//!
//! A terminal acts on escape sequences, and bidirectional overrides, line separators and
//! zero-width characters make text read other than it is. `display` shows every such
//! character as a visible `\u{…}` escape; the CLI and the TUI use it for everything that did
//! not come from the user at the keyboard.

use std::borrow::Cow;

/// Characters that make text look other than it is: bidi embeddings, overrides and
/// isolates, line and paragraph separators, zero-width characters and the BOM.
pub fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{061C}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'
            | '\u{FEFF}'
    )
}

/// C0 and C1 controls (and DEL), or a deceptive character: shown escaped.
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_deceptive(c)
}

/// `s` with every control or deceptive character shown as `\u{…}` (one line).
pub fn display(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Like `display`, but line breaks (`\n`) stay: for notes and multi-line messages.
pub fn display_lines(s: &str) -> String {
    s.split('\n').map(display).collect::<Vec<_>>().join("\n")
}

/// Why a plain text field is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    #[error("control characters are not allowed")]
    Control,
    #[error("bidirectional controls, line separators and zero-width characters are not allowed")]
    Deceptive,
}

/// Checks a single-line plain text field (a name, a title, a specialty).
pub fn check_line(s: &str) -> Result<(), TextProblem> {
    check(s, false)
}

/// Checks a plain text field that may hold line breaks (a bio, a note).
pub fn check_lines(s: &str) -> Result<(), TextProblem> {
    check(s, true)
}

fn check(s: &str, newlines: bool) -> Result<(), TextProblem> {
    for c in s.chars() {
        if c.is_control() && !(newlines && c == '\n') {
            return Err(TextProblem::Control);
        }
        if is_deceptive(c) {
            return Err(TextProblem::Deceptive);
        }
    }
    Ok(())
}

/// A file name built from a report's title (or another user's text): letters, digits, `.`,
/// `-` and `_` only, never a path separator or a leading dot, at most 60 characters;
/// `fallback` when nothing is left.
pub fn safe_file_name(title: &str, fallback: &str) -> String {
    let s: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let s = s.trim_start_matches('.');
    if s.is_empty() || s.chars().all(|c| c == '_') {
        fallback.to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(display("plain Ünïcode"), "plain Ünïcode");
        assert_eq!(display("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(display("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(display("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(display("a\u{2066}b\u{2069}"), "a\\u{2066}b\\u{2069}");
        assert_eq!(display("l\u{2028}p\u{2029}"), "l\\u{2028}p\\u{2029}");
        assert_eq!(display("z\u{200b}w\u{feff}"), "z\\u{200b}w\\u{feff}");
        assert_eq!(display("two\nlines"), "two\\u{a}lines");
        assert_eq!(display_lines("two\nli\x07nes"), "two\nli\\u{7}nes");
    }

    #[test]
    fn plain_fields_refuse_deceptive_characters() {
        assert_eq!(check_line("Dr. Ann Öz"), Ok(()));
        assert_eq!(check_line("a\u{202e}b"), Err(TextProblem::Deceptive));
        assert_eq!(check_line("a\u{200d}b"), Err(TextProblem::Deceptive));
        assert_eq!(check_line("a\nb"), Err(TextProblem::Control));
        assert_eq!(check_lines("a\nb"), Ok(()));
        assert_eq!(check_lines("a\u{2028}b"), Err(TextProblem::Deceptive));
    }

    #[test]
    fn file_names_never_leave_the_folder() {
        assert_eq!(safe_file_name("../../etc/passwd", "r"), "_.._etc_passwd");
        assert_eq!(safe_file_name(".bashrc", "r"), "bashrc");
        assert_eq!(safe_file_name("..", "r"), "r");
        assert_eq!(safe_file_name("/", "r"), "r");
        assert_eq!(safe_file_name("scan 3.pdf", "r"), "scan_3.pdf");
    }
}

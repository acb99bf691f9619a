//! The report viewer's content (issue 14.11): a report read into memory, never to disk.
//! Text and Markdown are kept as sanitized text in a `Zeroizing` buffer; anything else is a
//! summary. Dropping the viewer (closing it, the idle lock, logout) wipes the text.

use std::fmt::Write as _;

use zeroize::Zeroizing;

use crate::client::read::InMemory;

/// Largest report shown as text; a larger one gets the summary (its hash is still computed).
pub const MAX_TEXT: u64 = 4 * 1024 * 1024;

pub enum Body {
    /// Sanitized text, `\n`-separated: no control or deceptive character left unescaped.
    Text {
        markdown: bool,
        text: Zeroizing<String>,
    },
    /// Not shown as text: why.
    Summary(&'static str),
}

pub struct Viewer {
    pub report: uuid::Uuid,
    pub title: String,
    pub file_name: String,
    /// In words: "plain text", "Markdown", "PDF document", "binary data".
    pub kind: &'static str,
    pub len: u64,
    pub sha256: String,
    /// Issue 16: "submitted by station Lab-1 for Dr Herz", checked against the ledger.
    pub origin: Option<String>,
    pub body: Body,
    /// First line shown.
    pub scroll: usize,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("report", &self.report)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// How many lines the body has (1 for a summary).
    pub fn lines(&self) -> usize {
        match &self.body {
            Body::Text { text, .. } => text.lines().count().max(1),
            Body::Summary(_) => 1,
        }
    }

    /// Builds the viewer from what the client read; `title` is the already escaped title.
    pub fn new(title: String, m: InMemory) -> Viewer {
        let meta = &m.report.meta;
        let file_name = crate::text::display(&meta.file_name).into_owned();
        let ext = meta
            .file_name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let markdown = matches!(ext.as_str(), "md" | "markdown");
        let (kind, body) = match m.bytes.as_deref() {
            Some(b) if b.starts_with(b"%PDF-") => ("PDF document", Body::Summary(PDF)),
            _ if ext == "pdf" => ("PDF document", Body::Summary(PDF)),
            None => ("data", Body::Summary(TOO_LARGE)),
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) if !s.contains('\0') => (
                    if markdown { "Markdown" } else { "plain text" },
                    Body::Text {
                        markdown,
                        text: sanitize(s),
                    },
                ),
                _ => ("binary data", Body::Summary(BINARY)),
            },
        };
        let mut sha256 = String::with_capacity(64);
        for b in m.sha256 {
            let _ = write!(sha256, "{b:02x}");
        }
        Viewer {
            origin: m.report.origin.as_ref().map(ToString::to_string),
            report: m.report.detail.summary.id,
            title,
            file_name,
            kind,
            len: m.len,
            sha256,
            body,
            scroll: 0,
        }
    }
}

const PDF: &str = "PDFs are not shown as text: no PDF text extractor we checked is safe on \
    hostile files. Compare the SHA-256 with the author's, or save it (s) to read it in a PDF \
    viewer.";
const TOO_LARGE: &str = "Larger than 4 MiB: not shown here. Save it (s) to read it.";
const BINARY: &str = "Not text: not shown here. Save it (s) to open it with its program.";

/// The terminal-text sanitizer (`crate::text`) applied to a whole document, into a buffer
/// sized once so no unwiped copy is left by a reallocation: tabs become spaces, CRLF becomes
/// LF, every other control or deceptive character is shown as a visible `\u{…}` escape.
pub fn sanitize(s: &str) -> Zeroizing<String> {
    let escaped = |c: char| format!("\\u{{{:x}}}", c as u32).len();
    let mut chars = s.chars().peekable();
    let mut size = 0;
    while let Some(c) = chars.next() {
        size += match c {
            '\n' => 1,
            '\t' => 4,
            '\r' if chars.peek() == Some(&'\n') => 0,
            c if crate::text::needs_escape(c) => escaped(c),
            c => c.len_utf8(),
        };
    }
    let mut out = Zeroizing::new(String::with_capacity(size));
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => out.push('\n'),
            '\t' => out.push_str("    "),
            '\r' if chars.peek() == Some(&'\n') => {}
            c if crate::text::needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    debug_assert_eq!(out.len(), size);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_cannot_reach_the_terminal() {
        // CSI clear screen, OSC 52 clipboard write, an 8-bit CSI, a bidi override, BEL, DEL.
        let hostile = "a\u{1b}[2Jb\u{1b}]52;c;aGk=\u{7}c\u{9b}31md\u{202e}e\u{7f}";
        let out = sanitize(hostile);
        assert!(!out.chars().any(crate::text::needs_escape), "{:?}", &*out);
        assert_eq!(
            &*out,
            "a\\u{1b}[2Jb\\u{1b}]52;c;aGk=\\u{7}c\\u{9b}31md\\u{202e}e\\u{7f}"
        );
    }

    #[test]
    fn keeps_lines_and_expands_tabs() {
        let out = sanitize("one\r\ntwo\tx\rthree\n");
        assert_eq!(&*out, "one\ntwo    x\\u{d}three\n");
        assert_eq!(out.capacity(), out.len());
    }
}

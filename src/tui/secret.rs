//! Password fields (issue 17 point 12): the text lives in our own `Zeroizing` buffer, sized
//! once for the longest password allowed so it never reallocates (which would leave an
//! unwiped copy behind). The text-area widget is only ever given the mask, and no undo
//! history or yank buffer ever holds the password.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::{CursorMove, TextArea};
use zeroize::{Zeroize, Zeroizing};

use crate::seal::MAX_PASSWORD_CHARS;

const MASK: char = '•';

pub struct SecretField {
    text: Zeroizing<String>,
    /// In characters.
    cursor: usize,
    placeholder: &'static str,
    /// What is drawn: one `•` per character, the cursor at the same place.
    pub mask: TextArea<'static>,
}

impl SecretField {
    pub fn new(placeholder: &'static str) -> SecretField {
        SecretField {
            text: Zeroizing::new(String::with_capacity(MAX_PASSWORD_CHARS * 4)),
            cursor: 0,
            placeholder,
            mask: crate::tui::state::password_field(placeholder),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// A copy for the login or registration, then the field is wiped.
    pub fn take(&mut self) -> Zeroizing<String> {
        let out = Zeroizing::new(self.text.as_str().to_owned());
        self.wipe();
        out
    }

    /// A copy, the field kept (registration needs it again after the mailed code).
    pub fn copy(&self) -> Zeroizing<String> {
        Zeroizing::new(self.text.as_str().to_owned())
    }

    pub fn same_as(&self, other: &SecretField) -> bool {
        *self.text == *other.text
    }

    pub fn wipe(&mut self) {
        // Zeroes the whole capacity, keeps the allocation.
        self.text.zeroize();
        self.cursor = 0;
        self.sync();
    }

    /// Pasted text: controls dropped, cut at the longest password allowed.
    pub fn insert_str(&mut self, s: &str) {
        for c in s.chars().filter(|c| !c.is_control()) {
            self.insert(c);
        }
        self.sync();
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    fn insert(&mut self, c: char) {
        if self.len() >= MAX_PASSWORD_CHARS || self.text.len() + c.len_utf8() > self.text.capacity()
        {
            return;
        }
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    /// Removes characters `from..to` in place (no new allocation).
    fn remove(&mut self, from: usize, to: usize) {
        let (a, b) = (self.byte_at(from), self.byte_at(to));
        self.text.replace_range(a..b, "");
        self.cursor = from;
    }

    /// A key in the field, readline style; true when the text changed.
    pub fn key(&mut self, k: KeyEvent) -> bool {
        let len = self.len();
        let before = self.text.len();
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = len,
            KeyCode::Char('u') if ctrl => self.remove(0, self.cursor),
            KeyCode::Char('k') if ctrl => {
                let at = self.cursor;
                self.remove(at, len);
            }
            KeyCode::Char('w') if ctrl => {
                let chars: Vec<bool> = self.text.chars().map(char::is_whitespace).collect();
                let mut from = self.cursor;
                while from > 0 && chars[from - 1] {
                    from -= 1;
                }
                while from > 0 && !chars[from - 1] {
                    from -= 1;
                }
                let to = self.cursor;
                self.remove(from, to);
            }
            KeyCode::Char('h') if ctrl && self.cursor > 0 => {
                let to = self.cursor;
                self.remove(to - 1, to);
            }
            KeyCode::Char(c) if !ctrl && !k.modifiers.contains(KeyModifiers::ALT) => self.insert(c),
            KeyCode::Backspace if self.cursor > 0 => {
                let to = self.cursor;
                self.remove(to - 1, to);
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.cursor;
                self.remove(at, at + 1);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            _ => return false,
        }
        self.sync();
        // Every edit inserts or removes at least one character.
        self.text.len() != before
    }

    /// The mask, rebuilt: the widget never sees the text.
    fn sync(&mut self) {
        let mut m = crate::tui::state::password_field(self.placeholder);
        let n = self.len();
        if n > 0 {
            m.insert_str(MASK.to_string().repeat(n));
        }
        m.move_cursor(CursorMove::Jump(0, self.cursor as u16));
        self.mask = m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }
    fn c(ch: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(ch), KeyModifiers::CONTROL)
    }
    fn typed(f: &mut SecretField, s: &str) {
        for ch in s.chars() {
            f.key(k(KeyCode::Char(ch)));
        }
    }

    #[test]
    fn the_widget_only_holds_the_mask() {
        let mut f = SecretField::new("password");
        typed(&mut f, "correct horse");
        assert_eq!(f.mask.lines(), ["•••••••••••••"]);
        assert!(!f.mask.lines().concat().contains("horse"));
        assert_eq!(&*f.copy(), "correct horse");
    }

    #[test]
    fn readline_keys_edit_the_real_text() {
        let mut f = SecretField::new("password");
        typed(&mut f, "one two three");
        f.key(c('w'));
        assert_eq!(&*f.copy(), "one two ");
        f.key(k(KeyCode::Home));
        f.key(k(KeyCode::Delete));
        f.key(k(KeyCode::Right));
        f.key(k(KeyCode::Char('X')));
        assert_eq!(&*f.copy(), "nXe two ");
        f.key(c('k'));
        assert_eq!(&*f.copy(), "nX");
        f.key(c('u'));
        assert!(f.is_empty());
        assert_eq!(f.mask.lines(), [""]);
    }

    #[test]
    fn take_wipes_and_the_buffer_never_moves() {
        let mut f = SecretField::new("password");
        let ptr = f.text.as_ptr();
        typed(&mut f, &"é".repeat(200));
        assert_eq!(f.len(), MAX_PASSWORD_CHARS, "cut at the longest allowed");
        assert_eq!(f.text.as_ptr(), ptr, "never reallocated");
        let out = f.take();
        assert_eq!(out.chars().count(), MAX_PASSWORD_CHARS);
        assert!(f.is_empty() && f.cursor == 0);
        assert_eq!(f.text.as_ptr(), ptr);
        // The spare capacity holds no byte of the old text.
        let cap = f.text.capacity();
        // SAFETY: reading initialized-or-zeroed bytes of our own allocation, len 0..cap.
        let raw = unsafe { std::slice::from_raw_parts(ptr, cap) };
        assert!(raw.iter().all(|b| *b == 0), "wiped");
    }
}

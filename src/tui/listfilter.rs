//! The `/` filter every list shares: a one-line field, whether it has the keys, and the
//! rule "every word must appear in the row's text".

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui_textarea::TextArea;

use crate::tui::state::{field_text, text_field};
use crate::tui::theme::Theme;

pub struct ListFilter {
    pub field: TextArea<'static>,
    /// The field has the keys.
    pub focused: bool,
    placeholder: &'static str,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter::new("subject, recipient or date")
    }
}

impl ListFilter {
    pub fn new(placeholder: &'static str) -> Self {
        ListFilter {
            field: text_field(placeholder),
            focused: false,
            placeholder,
        }
    }

    pub fn text(&self) -> String {
        field_text(&self.field)
    }

    pub fn is_empty(&self) -> bool {
        self.text().trim().is_empty()
    }

    /// The field is drawn while it has the keys or holds words.
    pub fn visible(&self) -> bool {
        self.focused || !self.text().is_empty()
    }

    /// The lowercased words; a row fits when each is in its text.
    pub fn words(&self) -> Vec<String> {
        self.text()
            .to_lowercase()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    pub fn fits(words: &[String], row_text: &str) -> bool {
        if words.is_empty() {
            return true;
        }
        let hay = row_text.to_lowercase();
        words.iter().all(|w| hay.contains(w.as_str()))
    }

    /// Empties the field; `false` when there was nothing to clear.
    pub fn clear(&mut self) -> bool {
        if self.text().is_empty() {
            return false;
        }
        self.field = text_field(self.placeholder);
        true
    }

    /// `N`, or `N of M` while words narrow the list.
    pub fn count(&self, shown: usize, total: usize) -> String {
        if self.is_empty() {
            shown.to_string()
        } else {
            format!("{shown} of {total}")
        }
    }

    /// Draws ` / field` on the first line of `area` when visible; returns what is left.
    pub fn render(&self, t: &Theme, frame: &mut Frame, area: Rect) -> Rect {
        if !self.visible() {
            return area;
        }
        let [f, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
        let mut field = self.field.clone();
        field.set_cursor_style(if self.focused {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        });
        field.set_placeholder_style(t.muted);
        let [label, input] =
            Layout::horizontal([Constraint::Length(3), Constraint::Min(1)]).areas(f);
        frame.render_widget(Span::styled(" / ", t.accent), label);
        frame.render_widget(&field, input);
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> ListFilter {
        let mut f = ListFilter::new("x");
        f.field.insert_str(s);
        f
    }

    #[test]
    fn every_word_must_appear_in_any_order_and_case() {
        let f = typed("HERZ  2026-12");
        let w = f.words();
        assert!(ListFilter::fits(&w, "Fri 2026-12-11 Dr Dana Herz booked"));
        assert!(!ListFilter::fits(&w, "Fri 2026-11-11 Dr Dana Herz booked"));
        assert!(ListFilter::fits(&typed("").words(), "anything"));
        assert!(ListFilter::fits(&typed("   ").words(), "anything"));
    }

    #[test]
    fn clear_reports_whether_there_was_text_and_count_follows() {
        let mut f = typed("pat");
        assert_eq!(f.count(2, 5), "2 of 5");
        assert!(f.clear());
        assert!(!f.clear());
        assert_eq!(f.count(5, 5), "5");
        assert!(!f.visible());
        f.focused = true;
        assert!(f.visible());
    }
}

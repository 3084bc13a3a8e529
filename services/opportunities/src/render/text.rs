//! The fonts, and measuring and wrapping text with them.
//!
//! Widths come from rustybuzz, the shaper krilla draws with, so a right-aligned amount ends
//! exactly at its column's edge (kerning included).

use std::cell::RefCell;
use std::collections::HashMap;

use rustybuzz::{Face, UnicodeBuffer};

use super::RenderError;
use super::content::clean;

/// Liberation Sans Regular 2.1.5 (SIL OFL 1.1, see `assets/fonts/OFL-1.1.txt`).
pub(crate) const REGULAR: &[u8] = include_bytes!("../../assets/fonts/LiberationSans-Regular.ttf");
/// Liberation Sans Bold 2.1.5 (SIL OFL 1.1).
pub(crate) const BOLD: &[u8] = include_bytes!("../../assets/fonts/LiberationSans-Bold.ttf");
/// File names, for error messages.
pub(crate) const REGULAR_NAME: &str = "LiberationSans-Regular.ttf";
/// File names, for error messages.
pub(crate) const BOLD_NAME: &str = "LiberationSans-Bold.ttf";

/// How a run of text looks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Style {
    /// Font size in points.
    pub(crate) size: f32,
    pub(crate) bold: bool,
    /// Gray level of the text, 0 black to 255 white.
    pub(crate) gray: u8,
}

impl Style {
    /// Distance between two baselines.
    pub(crate) fn line_height(self) -> f32 {
        self.size * 1.3
    }

    /// Distance from the top of a line to its baseline: Liberation Sans' ascent is 0.905 em,
    /// so the rest of the line height is shared between above and below.
    pub(crate) fn ascent(self) -> f32 {
        self.size * 1.05
    }
}

/// Measures text in the two fonts.
pub(crate) struct Metrics {
    regular: Face<'static>,
    bold: Face<'static>,
    /// Widths in em of the texts measured so far, regular and bold: a document measures the
    /// same words and amounts many times (column widths, wrapping, alignment), and shaping is
    /// most of the layout's cost.
    widths: RefCell<[HashMap<String, f32>; 2]>,
}

impl Metrics {
    /// Parses the compiled-in fonts.
    pub(crate) fn new() -> Result<Self, RenderError> {
        Ok(Self {
            regular: Face::from_slice(REGULAR, 0).ok_or(RenderError::Font(REGULAR_NAME))?,
            bold: Face::from_slice(BOLD, 0).ok_or(RenderError::Font(BOLD_NAME))?,
            widths: RefCell::default(),
        })
    }

    fn face(&self, style: Style) -> &Face<'static> {
        if style.bold {
            &self.bold
        } else {
            &self.regular
        }
    }

    /// Width in points of `text` on one line, shaped as krilla will shape it.
    pub(crate) fn width(&self, text: &str, style: Style) -> f32 {
        if text.is_empty() {
            return 0.0;
        }
        let cached = self.widths.borrow()[usize::from(style.bold)]
            .get(text)
            .copied();
        let em = cached.unwrap_or_else(|| {
            let em = self.shape_em(text, style);
            self.widths.borrow_mut()[usize::from(style.bold)].insert(text.to_owned(), em);
            em
        });
        em * style.size
    }

    /// Width in em of `text`, shaped.
    fn shape_em(&self, text: &str, style: Style) -> f32 {
        let face = self.face(style);
        let mut buffer = UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.guess_segment_properties();
        let shaped = rustybuzz::shape(face, &[], buffer);
        let units: i64 = shaped
            .glyph_positions()
            .iter()
            .map(|position| i64::from(position.x_advance))
            .sum();
        units as f32 / face.units_per_em().max(1) as f32
    }

    /// Width of one character on its own, for breaking a word too long for its column. A
    /// character the font lacks is as wide as the fallback glyph it prints as.
    fn char_width(&self, c: char, style: Style) -> f32 {
        let face = self.face(style);
        let notdef = rustybuzz::ttf_parser::GlyphId(0);
        let advance = face
            .glyph_index(c)
            .and_then(|glyph| face.glyph_hor_advance(glyph))
            .or_else(|| face.glyph_hor_advance(notdef))
            .unwrap_or(0);
        f32::from(advance) / face.units_per_em().max(1) as f32 * style.size
    }

    /// The widest paragraph of `text` on one line: what a column would need to print it
    /// unwrapped.
    pub(crate) fn natural_width(&self, text: &str, style: Style) -> f32 {
        clean(text)
            .split('\n')
            .map(|paragraph| {
                let words: Vec<&str> = paragraph.split_whitespace().collect();
                self.width(&words.join(" "), style)
            })
            .fold(0.0, f32::max)
    }

    /// The widest single word of `text`: below that a column breaks words.
    pub(crate) fn widest_word(&self, text: &str, style: Style) -> f32 {
        text.split_whitespace()
            .map(|word| self.width(word, style))
            .fold(0.0, f32::max)
    }

    /// Breaks `text` into lines no wider than `width`: at spaces, at "\n" (an empty paragraph
    /// gives an empty line), and between characters inside a word wider than `width`. Always
    /// gives at least one line, and at least one character per line, so it ends on any input.
    pub(crate) fn wrap(&self, text: &str, style: Style, width: f32) -> Vec<String> {
        let space = self.width(" ", style);
        let mut lines = Vec::new();
        for paragraph in clean(text).split('\n') {
            let mut line = String::new();
            let mut line_width = 0.0;
            for word in paragraph.split_whitespace() {
                let word_width = self.width(word, style);
                if !line.is_empty() {
                    if line_width + space + word_width <= width {
                        line.push(' ');
                        line.push_str(word);
                        line_width += space + word_width;
                        continue;
                    }
                    lines.push(std::mem::take(&mut line));
                    line_width = 0.0;
                }
                if word_width <= width {
                    line.push_str(word);
                    line_width = word_width;
                    continue;
                }
                for c in word.chars() {
                    let char_width = self.char_width(c, style);
                    if !line.is_empty() && line_width + char_width > width {
                        lines.push(std::mem::take(&mut line));
                        line_width = 0.0;
                    }
                    line.push(c);
                    line_width += char_width;
                }
            }
            lines.push(line);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: Style = Style {
        size: 10.0,
        bold: false,
        gray: 0,
    };

    #[test]
    fn the_fonts_have_every_romanian_letter() {
        let metrics = Metrics::new().expect("fonts");
        for face in [&metrics.regular, &metrics.bold] {
            for c in "șțăîâȘȚĂÎÂşţŞŢ".chars() {
                assert!(face.glyph_index(c).is_some(), "no glyph for {c}");
            }
        }
    }

    #[test]
    fn bold_is_wider_and_size_scales() {
        let metrics = Metrics::new().expect("fonts");
        let bold = Style { bold: true, ..BODY };
        let big = Style { size: 20.0, ..BODY };
        let text = "Îngrășăminte";
        assert!(metrics.width(text, bold) > metrics.width(text, BODY));
        let ratio = metrics.width(text, big) / metrics.width(text, BODY);
        assert!((ratio - 2.0).abs() < 1e-4, "{ratio}");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_keeps_every_word() {
        let metrics = Metrics::new().expect("fonts");
        let text = "Servicii de consultanță agronomică pentru culturi de toamnă, cu vizite lunare";
        let lines = metrics.wrap(text, BODY, 120.0);
        assert!(lines.len() > 2, "{lines:?}");
        for line in &lines {
            assert!(metrics.width(line, BODY) <= 120.0, "{line}");
        }
        assert_eq!(lines.join(" "), text);
    }

    #[test]
    fn wrap_breaks_a_word_longer_than_the_column_between_characters() {
        let metrics = Metrics::new().expect("fonts");
        let word = "x".repeat(200);
        let lines = metrics.wrap(&word, BODY, 50.0);
        assert!(lines.len() > 5);
        assert_eq!(lines.concat(), word);
        for line in &lines {
            assert!(metrics.width(line, BODY) <= 50.0 + 0.01, "{line}");
        }
    }

    #[test]
    fn wrap_keeps_paragraphs_and_blank_lines() {
        let metrics = Metrics::new().expect("fonts");
        assert_eq!(
            metrics.wrap("Unu\n\nDoi  trei\r\npatru", BODY, 500.0),
            ["Unu", "", "Doi trei", "patru"]
        );
        assert_eq!(metrics.wrap("", BODY, 500.0), [""]);
    }

    #[test]
    fn wrap_ends_even_when_no_character_fits() {
        let metrics = Metrics::new().expect("fonts");
        assert_eq!(metrics.wrap("abc", BODY, 0.0), ["a", "b", "c"]);
    }

    #[test]
    fn a_missing_glyph_still_has_a_width() {
        let metrics = Metrics::new().expect("fonts");
        assert!(metrics.width("😀", BODY) > 0.0);
        assert!(metrics.char_width('😀', BODY) > 0.0);
    }
}

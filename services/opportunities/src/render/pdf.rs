//! Writes the laid-out pages as a PDF with krilla.

use krilla::color::luma;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use krilla::{Document, SerializeSettings};

use super::layout::{self, Op, PAGE_HEIGHT, PAGE_WIDTH};
use super::text::{BOLD, BOLD_NAME, Metrics, REGULAR, REGULAR_NAME};
use super::{RenderError, RenderModel, content};

/// Renders `doc` as an A4 PDF with the fonts embedded (subset), page numbers on every page and
/// the table header repeated on every page the lines reach.
///
/// The output depends only on `doc`: no date or random ID is written (krilla derives the file ID
/// from the content), so the same model always gives the same bytes and can be cached by hash.
pub fn render_pdf(doc: &RenderModel) -> Result<Vec<u8>, RenderError> {
    let metrics = Metrics::new()?;
    let regular = Font::new(REGULAR.into(), 0).ok_or(RenderError::Font(REGULAR_NAME))?;
    let bold = Font::new(BOLD.into(), 0).ok_or(RenderError::Font(BOLD_NAME))?;
    let pages = layout::layout(doc, &metrics);

    let mut document = Document::new_with(SerializeSettings::default());
    // Title and language help viewers and screen readers; no creation date, which would make
    // two renderings of the same model differ.
    document.set_metadata(
        Metadata::new()
            .title(content::clean(&content::document_name(doc)))
            .language("ro".to_owned())
            .creator("crm-opportunities".to_owned()),
    );
    let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
        .ok_or_else(|| RenderError::Pdf("invalid page size".to_owned()))?;
    for ops in &pages {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        for op in ops {
            draw(&mut surface, op, &regular, &bold);
        }
        surface.finish();
        page.finish();
    }
    Ok(document.finish()?)
}

fn draw(surface: &mut Surface<'_>, op: &Op, regular: &Font, bold: &Font) {
    match op {
        Op::Text {
            x,
            baseline,
            style,
            text,
            ..
        } => {
            surface.set_stroke(None);
            surface.set_fill(Some(Fill {
                paint: luma::Color::new(style.gray).into(),
                ..Fill::default()
            }));
            let font = if style.bold { bold } else { regular };
            surface.draw_text(
                Point::from_xy(*x, *baseline),
                font.clone(),
                style.size,
                text,
                false,
                TextDirection::Auto,
            );
        }
        Op::Rule {
            x1,
            x2,
            y,
            thickness,
            gray,
        } => {
            let mut path = PathBuilder::new();
            path.move_to(*x1, *y);
            path.line_to(*x2, *y);
            if let Some(path) = path.finish() {
                surface.set_fill(None);
                surface.set_stroke(Some(Stroke {
                    paint: luma::Color::new(*gray).into(),
                    width: *thickness,
                    ..Stroke::default()
                }));
                surface.draw_path(&path);
            }
        }
        Op::Fill {
            x,
            y,
            width,
            height,
            gray,
        } => {
            let mut path = PathBuilder::new();
            if let Some(rect) = Rect::from_xywh(*x, *y, *width, *height) {
                path.push_rect(rect);
            }
            if let Some(path) = path.finish() {
                surface.set_stroke(None);
                surface.set_fill(Some(Fill {
                    paint: luma::Color::new(*gray).into(),
                    ..Fill::default()
                }));
                surface.draw_path(&path);
            }
        }
    }
}

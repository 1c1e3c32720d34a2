//! Text from an embedded bitmap font (font8x8's public-domain 8x8 Basic Latin glyphs, scaled by
//! whole pixels), so a plot needs no system font. Characters outside printable ASCII draw as `?`.

use image::Rgb;

use super::canvas::{Canvas, Rect};

/// Pixels per glyph cell, each way, before scaling.
const CELL: i64 = 8;

fn glyph(c: char) -> [u8; 8] {
    let code = if (' '..='~').contains(&c) { c as usize } else { '?' as usize };
    font8x8::legacy::BASIC_LEGACY[code]
}

/// Width in pixels of `s` drawn at `scale`.
pub fn text_width(s: &str, scale: i64) -> i64 {
    s.chars().count() as i64 * CELL * scale
}

/// Height in pixels of a line drawn at `scale`.
pub fn text_height(scale: i64) -> i64 {
    CELL * scale
}

/// The box `s` covers when drawn with its top-left corner at `(x, y)`.
pub fn text_rect(s: &str, x: i64, y: i64, scale: i64) -> Rect {
    Rect::new(x, y, text_width(s, scale), text_height(scale))
}

impl Canvas {
    /// Draws `s` left to right with its top-left corner at `(x, y)`.
    pub fn text(&mut self, s: &str, x: i64, y: i64, scale: i64, colour: Rgb<u8>) {
        self.glyphs(s, scale, colour, |tx, ty| (x + tx, y + ty));
    }

    /// Draws `s` centred on `cx`, top at `y`.
    pub fn text_centred(&mut self, s: &str, cx: i64, y: i64, scale: i64, colour: Rgb<u8>) {
        self.text(s, cx - text_width(s, scale) / 2, y, scale, colour);
    }

    /// Draws `s` reading bottom to top (a y-axis title), centred on `cy`, its glyph tops at `x`.
    pub fn text_up_centred(&mut self, s: &str, x: i64, cy: i64, scale: i64, colour: Rgb<u8>) {
        let y = cy + text_width(s, scale) / 2;
        self.glyphs(s, scale, colour, |tx, ty| (x + ty, y - tx));
    }

    /// Puts every lit font pixel, `place` turning text coordinates (x along the line, y down
    /// the glyph) into image coordinates.
    fn glyphs(&mut self, s: &str, scale: i64, colour: Rgb<u8>, place: impl Fn(i64, i64) -> (i64, i64)) {
        for (i, c) in s.chars().enumerate() {
            let rows = glyph(c);
            let left = i as i64 * CELL * scale;
            for (gy, bits) in rows.iter().enumerate() {
                for gx in 0..CELL {
                    // font8x8 keeps the leftmost pixel in bit 0.
                    if bits >> gx & 1 == 0 {
                        continue;
                    }
                    for sy in 0..scale {
                        for sx in 0..scale {
                            let (px, py) = place(left + gx * scale + sx, gy as i64 * scale + sy);
                            self.put(px, py, colour);
                        }
                    }
                }
            }
        }
    }
}

//! A white RGB image with clipped drawing: every primitive may reach past the edges.

use image::{Rgb, RgbImage};

pub const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
pub const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
/// Text that is not a title: dark enough to read, lighter than the frame.
pub const INK: Rgb<u8> = Rgb([40, 40, 40]);
pub const GRID: Rgb<u8> = Rgb([225, 225, 225]);
pub const FRAME_GREY: Rgb<u8> = Rgb([150, 150, 150]);

/// A rectangle of pixels, `x0..x1` by `y0..y1` (ends excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl Rect {
    pub fn new(x0: i64, y0: i64, width: i64, height: i64) -> Rect {
        Rect { x0, y0, x1: x0 + width, y1: y0 + height }
    }

    /// Pixels the two share.
    pub fn overlap(&self, other: &Rect) -> i64 {
        let w = self.x1.min(other.x1) - self.x0.max(other.x0);
        let h = self.y1.min(other.y1) - self.y0.max(other.y0);
        w.max(0) * h.max(0)
    }
}

pub struct Canvas {
    pub image: RgbImage,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Canvas {
        Canvas { image: RgbImage::from_pixel(width, height, WHITE) }
    }

    /// Sets one pixel; outside the image it does nothing.
    pub fn put(&mut self, x: i64, y: i64, colour: Rgb<u8>) {
        if x >= 0 && y >= 0 && x < i64::from(self.image.width()) && y < i64::from(self.image.height()) {
            self.image.put_pixel(x as u32, y as u32, colour);
        }
    }

    pub fn fill(&mut self, r: Rect, colour: Rgb<u8>) {
        for y in r.y0..r.y1 {
            for x in r.x0..r.x1 {
                self.put(x, y, colour);
            }
        }
    }

    /// A one-pixel outline just inside `r`.
    pub fn outline(&mut self, r: Rect, colour: Rgb<u8>) {
        self.fill(Rect { y1: r.y0 + 1, ..r }, colour);
        self.fill(Rect { y0: r.y1 - 1, ..r }, colour);
        self.fill(Rect { x1: r.x0 + 1, ..r }, colour);
        self.fill(Rect { x0: r.x1 - 1, ..r }, colour);
    }

    pub fn hline(&mut self, x0: i64, x1: i64, y: i64, colour: Rgb<u8>) {
        self.fill(Rect { x0, y0: y, x1, y1: y + 1 }, colour);
    }

    pub fn vline(&mut self, x: i64, y0: i64, y1: i64, colour: Rgb<u8>) {
        self.fill(Rect { x0: x, y0, x1: x + 1, y1 }, colour);
    }

    /// Every pixel whose centre, relative to `(cx, cy)`, satisfies `inside`, within `radius`.
    pub fn fill_shape(&mut self, cx: i64, cy: i64, radius: i64, colour: Rgb<u8>, inside: impl Fn(f64, f64) -> bool) {
        for dy in -radius..=radius {
            for dx in -radius..=radius {
                if inside(dx as f64, dy as f64) {
                    self.put(cx + dx, cy + dy, colour);
                }
            }
        }
    }
}

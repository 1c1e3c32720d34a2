//! The demo world's vocabulary and its scenes: one shape (circle, rectangle, triangle) in one of
//! eight colours, of some size and position, on a light, slightly tinted background. A scene is a
//! pure function of its seed.

use serde::{Deserialize, Serialize};

use crate::SplitMix64;

/// The shape a scene holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Circle,
    Rectangle,
    Triangle,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Rectangle, Shape::Triangle];

    /// The word used in captions, questions and answers.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Rectangle => "rectangle",
            Shape::Triangle => "triangle",
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }
}

/// The colour of a scene's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Red,
    Green,
    Blue,
    Black,
    Gray,
    Teal,
    Brown,
    Yellow,
}

impl Colour {
    pub const ALL: [Colour; 8] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Black,
        Colour::Gray,
        Colour::Teal,
        Colour::Brown,
        Colour::Yellow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Black => "black",
            Colour::Gray => "gray",
            Colour::Teal => "teal",
            Colour::Brown => "brown",
            Colour::Yellow => "yellow",
        }
    }

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }

    /// The base RGB value; each scene jitters it a little.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [205, 35, 35],
            Colour::Green => [40, 160, 45],
            Colour::Blue => [35, 65, 200],
            Colour::Black => [20, 20, 20],
            Colour::Gray => [128, 128, 128],
            Colour::Teal => [0, 128, 128],
            Colour::Brown => [125, 75, 30],
            Colour::Yellow => [235, 200, 20],
        }
    }
}

/// Where a shape sits, as captions say it (a 3x3 grid of the image).
pub fn place_name(cx: f32, cy: f32, size: f32) -> &'static str {
    let third = |v: f32| ((v / size * 3.0).floor() as i32).clamp(0, 2);
    match (third(cy), third(cx)) {
        (0, 0) => "in the upper left",
        (0, 1) => "at the top",
        (0, 2) => "in the upper right",
        (1, 0) => "on the left",
        (1, 1) => "in the center",
        (1, 2) => "on the right",
        (2, 0) => "in the lower left",
        (2, 1) => "at the bottom",
        _ => "in the lower right",
    }
}

/// One image of the world, in pixel units of a `size` x `size` image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub shape: Shape,
    pub colour: Colour,
    /// Centre of the shape's bounding box.
    pub cx: f32,
    pub cy: f32,
    /// Half width and half height of the bounding box (equal for circles).
    pub half_w: f32,
    pub half_h: f32,
    /// Triangle rotation in radians (unused for the others).
    pub angle: f32,
    /// Fill colour after jitter.
    pub fill: [u8; 3],
    /// Background colour: light, slightly tinted.
    pub background: [u8; 3],
    /// Image side in pixels.
    pub size: u32,
}

/// Uniform in `[lo, hi)`.
pub(crate) fn uniform(rng: &mut SplitMix64, lo: f32, hi: f32) -> f32 {
    let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
    lo + (hi - lo) * u
}

pub(crate) fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> T {
    items[rng.below(items.len() as u64) as usize]
}

impl Scene {
    /// A random scene with the given shape and colour.
    pub fn sample_with(rng: &mut SplitMix64, shape: Shape, colour: Colour, size: u32) -> Self {
        let s = size as f32;
        // Extent between a quarter and 0.6 of the image side.
        let half = uniform(rng, 0.125, 0.3) * s;
        let (half_w, half_h) = match shape {
            Shape::Circle => (half, half),
            // Rectangles: aspect between 1:2 and 2:1 (some near-squares).
            Shape::Rectangle => {
                let aspect = uniform(rng, 0.5, 1.0);
                if rng.below(2) == 0 {
                    (half, half * aspect)
                } else {
                    (half * aspect, half)
                }
            }
            Shape::Triangle => (half, half),
        };
        let margin = 1.0;
        let cx = uniform(rng, half_w + margin, s - half_w - margin);
        let cy = uniform(rng, half_h + margin, s - half_h - margin);
        let angle = uniform(rng, 0.0, std::f32::consts::TAU);
        let base = colour.rgb();
        let mut fill = [0u8; 3];
        for (f, b) in fill.iter_mut().zip(base) {
            *f = (b as f32 + uniform(rng, -12.0, 12.0)).clamp(0.0, 255.0) as u8;
        }
        let mut background = [0u8; 3];
        let level = uniform(rng, 225.0, 250.0);
        for b in background.iter_mut() {
            *b = (level + uniform(rng, -8.0, 5.0)).clamp(0.0, 255.0) as u8;
        }
        Self {
            shape,
            colour,
            cx,
            cy,
            half_w,
            half_h,
            angle,
            fill,
            background,
            size,
        }
    }

    /// A random scene: shape and colour uniform.
    pub fn sample(rng: &mut SplitMix64, size: u32) -> Self {
        let shape = pick(rng, &Shape::ALL);
        let colour = pick(rng, &Colour::ALL);
        Self::sample_with(rng, shape, colour, size)
    }

    /// "small", "" or "large" by extent.
    pub fn size_word(&self) -> &'static str {
        let extent = self.half_w.max(self.half_h) / self.size as f32;
        if extent < 0.17 {
            "small"
        } else if extent > 0.24 {
            "large"
        } else {
            ""
        }
    }

    /// Where the shape sits (`in the upper left`, ...).
    pub fn place(&self) -> &'static str {
        place_name(self.cx, self.cy, self.size as f32)
    }

    /// The triangle's vertices (equilateral, inscribed in the bounding circle, rotated).
    pub fn triangle(&self) -> [(f32, f32); 3] {
        let r = self.half_w;
        let mut v = [(0.0, 0.0); 3];
        for (k, p) in v.iter_mut().enumerate() {
            let a = self.angle + k as f32 * std::f32::consts::TAU / 3.0;
            *p = (self.cx + r * a.cos(), self.cy + r * a.sin());
        }
        v
    }

    /// Whether the point `(x, y)` (pixel units) lies inside the shape.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        match self.shape {
            Shape::Circle => {
                let (dx, dy) = (x - self.cx, y - self.cy);
                dx * dx + dy * dy <= self.half_w * self.half_w
            }
            Shape::Rectangle => (x - self.cx).abs() <= self.half_w && (y - self.cy).abs() <= self.half_h,
            Shape::Triangle => {
                let [a, b, c] = self.triangle();
                let edge = |p: (f32, f32), q: (f32, f32)| (q.0 - p.0) * (y - p.1) - (q.1 - p.1) * (x - p.0);
                let (e0, e1, e2) = (edge(a, b), edge(b, c), edge(c, a));
                (e0 >= 0.0 && e1 >= 0.0 && e2 >= 0.0) || (e0 <= 0.0 && e1 <= 0.0 && e2 <= 0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_stay_inside_the_image_and_places_cover_the_grid() {
        let mut rng = SplitMix64::new(3);
        let mut places = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let s = Scene::sample(&mut rng, 64);
            assert!(s.cx - s.half_w >= 0.0 && s.cx + s.half_w <= 64.0, "{s:?}");
            assert!(s.cy - s.half_h >= 0.0 && s.cy + s.half_h <= 64.0, "{s:?}");
            assert!(s.contains(s.cx, s.cy), "{s:?}");
            places.insert(s.place());
        }
        assert_eq!(places.len(), 9);
    }
}

//! Rasterising a [`Scene`]: each pixel's coverage is estimated on a 4x4 grid of sample points
//! (simple anti-aliasing) and blends the fill over the background.

use std::path::Path;

use image::RgbImage;

use super::world::Scene;
use crate::DataError;

const SUBSAMPLES: u32 = 4;

/// Draws the scene as an RGB image of `scene.size` pixels a side.
pub fn render(scene: &Scene) -> RgbImage {
    let n = scene.size;
    let mut img = RgbImage::new(n, n);
    let step = 1.0 / SUBSAMPLES as f32;
    for y in 0..n {
        for x in 0..n {
            let mut hits = 0u32;
            for sy in 0..SUBSAMPLES {
                for sx in 0..SUBSAMPLES {
                    let px = x as f32 + (sx as f32 + 0.5) * step;
                    let py = y as f32 + (sy as f32 + 0.5) * step;
                    hits += u32::from(scene.contains(px, py));
                }
            }
            let a = hits as f32 / (SUBSAMPLES * SUBSAMPLES) as f32;
            let mut rgb = [0u8; 3];
            for c in 0..3 {
                let v = a * scene.fill[c] as f32 + (1.0 - a) * scene.background[c] as f32;
                rgb[c] = v.round().clamp(0.0, 255.0) as u8;
            }
            img.put_pixel(x, y, image::Rgb(rgb));
        }
    }
    img
}

/// Encodes an image as PNG bytes (deterministic).
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, DataError> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| DataError::ImageDecode {
            path: "<png encoder>".into(),
            message: e.to_string(),
        })?;
    Ok(out.into_inner())
}

/// Renders and writes the scene as a PNG file.
pub fn write_png(scene: &Scene, path: &Path) -> Result<(), DataError> {
    let bytes = png_bytes(&render(scene))?;
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::world::{Colour, Shape};
    use crate::SplitMix64;

    #[test]
    fn the_shape_is_drawn_in_its_colour_over_the_background() {
        let mut rng = SplitMix64::new(9);
        let scene = Scene::sample_with(&mut rng, Shape::Circle, Colour::Blue, 64);
        let img = render(&scene);
        let centre = img.get_pixel(scene.cx as u32, scene.cy as u32).0;
        assert_eq!(centre, scene.fill);
        assert_eq!(img.get_pixel(0, 0).0, scene.background);
    }
}

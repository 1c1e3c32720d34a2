//! Drawing anchors over an image, coloured by the head that chose them: researchers would rather
//! look than read.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{ConnectorError, Result};

/// 16 distinguishable colours (one per CLIP ViT-L head), from the Tableau-20 palette.
const PALETTE: [[u8; 3]; 16] = [
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
    [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148],
];

/// The colour of head `h`.
pub fn head_colour(h: usize) -> [u8; 3] {
    PALETTE[h % PALETTE.len()]
}

/// Draws the patch anchors of one image over it: each anchor's patch cell is tinted and outlined
/// in its head's colour. Token `t >= 1` is patch `t - 1` of a row-major `side × side` grid
/// (`side² = tokens - 1`); CLS (token 0) has no cell and is not drawn.
pub fn draw_anchors(image_path: &Path, tokens: usize, anchors: &[(i64, i64)], out: &Path) -> Result<()> {
    let err = |file: &Path, message: String| ConnectorError::File { file: file.to_path_buf(), message };
    let img = image::open(image_path).map_err(|e| err(image_path, format!("cannot decode image: {e}")))?;
    let mut img: RgbImage = img.to_rgb8();
    let side = ((tokens.saturating_sub(1)) as f64).sqrt().round() as usize;
    if side == 0 || side * side + 1 != tokens {
        return Err(ConnectorError::InputShape {
            what: "cls_attention tokens".into(),
            expected: "1 + a square number of patch tokens (e.g. 577 = 1 + 24²)".into(),
            found: vec![tokens],
        });
    }
    let (w, h) = img.dimensions();
    let cell = |i: usize, n: u32| ((i as f64) * n as f64 / side as f64).round() as u32;
    for &(token, head) in anchors {
        if token <= 0 || head < 0 {
            continue;
        }
        let p = (token - 1) as usize;
        let (r, c) = (p / side, p % side);
        let (x0, x1, y0, y1) = (cell(c, w), cell(c + 1, w).min(w), cell(r, h), cell(r + 1, h).min(h));
        let colour = head_colour(head as usize);
        for y in y0..y1 {
            for x in x0..x1 {
                let border = x == x0 || y == y0 || x + 1 == x1 || y + 1 == y1;
                let px = img.get_pixel_mut(x, y);
                let a = if border { 1.0 } else { 0.45 };
                let mixed: [u8; 3] =
                    std::array::from_fn(|k| ((1.0 - a) * px.0[k] as f64 + a * colour[k] as f64).round() as u8);
                *px = Rgb(mixed);
            }
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| err(parent, format!("cannot create folder: {e}")))?;
    }
    img.save_with_format(out, image::ImageFormat::Png).map_err(|e| err(out, format!("cannot write PNG: {e}")))
}

//! LLaVA-NeXT's AnyRes geometry: which grid resolution an image goes to, the size it is resized
//! to inside it (aspect kept) and where it sits once padded.
//!
//! Upstream: transformers 5.23 `image_processing_utils.py` (`select_best_resolution`,
//! `get_patch_output_size`) and `models/llava_next/image_processing_pil_llava_next.py`
//! (`_get_padding_size`); the same functions as LLaVA-NeXT's `llava/mm_utils.py`. Python's
//! arithmetic is reproduced exactly: true division and products in f64, `int()` truncation,
//! `math.ceil`, and integer areas that cannot overflow (u64 / i128 here).

/// transformers' `select_best_resolution`: among `candidates_hw` (`(height, width)` pairs), the
/// one that keeps the most of the image's pixels once it is scaled (aspect kept) to fit inside,
/// ties broken by the least wasted area, then by the first in the list.
///
/// For each candidate: `scale = min(w / W, h / H)` in f64, the downscaled size is
/// `(int(W * scale), int(H * scale))`, effective = `min(dw * dh, W * H)`, wasted = `w * h -
/// effective`. Python starts from effective 0 and wasted infinity, so a candidate whose effective
/// area truncates to 0 (an extreme aspect ratio) is still chosen when none does better.
///
/// Python returns `None` for an empty list; this returns `original_hw` unchanged then (the image
/// keeps its size). A zero side in `original_hw` counts as 1.
pub fn select_best_resolution(original_hw: (u32, u32), candidates_hw: &[(u32, u32)]) -> (u32, u32) {
    let (oh, ow) = (original_hw.0.max(1) as u64, original_hw.1.max(1) as u64);
    let mut best = None;
    let mut max_effective: u64 = 0;
    let mut min_wasted: Option<i128> = None; // None = +inf
    for &(h, w) in candidates_hw {
        let scale = f64::min(w as f64 / ow as f64, h as f64 / oh as f64);
        // int(x) truncates toward zero; `as` saturates where Python would raise on inf/nan.
        let dw = (ow as f64 * scale) as u64;
        let dh = (oh as f64 * scale) as u64;
        let effective = dw.saturating_mul(dh).min(ow * oh);
        let wasted = (w as i128) * (h as i128) - effective as i128;
        let less_wasted = min_wasted.is_none_or(|m| wasted < m);
        if effective > max_effective || (effective == max_effective && less_wasted) {
            max_effective = effective;
            min_wasted = Some(wasted);
            best = Some((h, w));
        }
    }
    best.unwrap_or(original_hw)
}

/// transformers' `get_patch_output_size`: the `(height, width)` an `original_hw` image is resized
/// to so that it fits `target_hw` with its aspect kept. The side with the smaller scale becomes the
/// target's; the other is `min(ceil(side * scale), target side)`, computed in f64. A zero side in
/// `original_hw` counts as 1; the result is at least 1 on each side.
pub fn patch_output_size(original_hw: (u32, u32), target_hw: (u32, u32)) -> (u32, u32) {
    let (oh, ow) = (original_hw.0.max(1) as f64, original_hw.1.max(1) as f64);
    let (th, tw) = target_hw;
    let scale_w = tw as f64 / ow;
    let scale_h = th as f64 / oh;
    let (h, w) = if scale_w < scale_h {
        (ceil_to_u32(oh * scale_w).min(th), tw)
    } else {
        (th, ceil_to_u32(ow * scale_h).min(tw))
    };
    (h.max(1), w.max(1))
}

fn ceil_to_u32(x: f64) -> u32 {
    x.ceil() as u32
}

/// `_get_padding_size` as offsets: `(top, left)` of a `resized_hw` image centred in `target_hw`,
/// `divmod(target - resized, 2)`, the odd pixel going to the bottom / right. Sides larger than the
/// target (never produced by [`patch_output_size`]) get offset 0.
pub fn padding_offset(resized_hw: (u32, u32), target_hw: (u32, u32)) -> (u32, u32) {
    (
        target_hw.0.saturating_sub(resized_hw.0) / 2,
        target_hw.1.saturating_sub(resized_hw.1) / 2,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINPOINTS_336: [(u32, u32); 5] =
        [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

    #[test]
    fn best_resolution_matches_transformers() {
        // Expected values printed by transformers 5.23 select_best_resolution.
        for (hw, want) in [
            ((480, 640), (672, 672)),
            ((640, 480), (672, 672)),
            ((100, 100), (336, 672)), // tie on effective and wasted: the first wins
            ((336, 1000), (336, 1008)),
            ((1000, 336), (1008, 336)),
            ((1, 100_000), (336, 672)), // effective truncates to 0 everywhere: least wasted
            ((2000, 2000), (672, 672)),
            ((336, 672), (336, 672)),
        ] {
            assert_eq!(select_best_resolution(hw, &PINPOINTS_336), want, "{hw:?}");
        }
    }

    #[test]
    fn best_resolution_of_no_candidates_is_the_image() {
        assert_eq!(select_best_resolution((7, 9), &[]), (7, 9));
    }

    #[test]
    fn patch_output_size_matches_transformers() {
        for (hw, target, want) in [
            ((480, 640), (672, 672), (504, 672)),
            ((90, 41), (96, 32), (71, 32)),
            ((3, 7), (64, 32), (14, 32)),
            ((1, 100_000), (336, 672), (1, 672)),
            ((100, 100), (336, 672), (336, 336)),
        ] {
            assert_eq!(patch_output_size(hw, target), want, "{hw:?} -> {target:?}");
        }
    }

    #[test]
    fn padding_puts_the_odd_pixel_last() {
        assert_eq!(padding_offset((71, 32), (96, 32)), (12, 0));
        assert_eq!(padding_offset((14, 32), (64, 32)), (25, 0));
        assert_eq!(padding_offset((64, 64), (64, 64)), (0, 0));
    }
}

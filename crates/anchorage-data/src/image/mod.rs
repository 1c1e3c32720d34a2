//! Images: decode to RGB as Pillow does, LLaVA's `expand2square`, Pillow-exact bicubic resize,
//! CLIPImageProcessor's crop, rescale and normalisation, and LLaVA-NeXT's AnyRes tiling.

mod anyres;
mod anyres_tokens;
mod best_resolution;
mod decode;
mod jpeg;
mod processor;
mod resample;
mod rgb;
mod write;

pub use anyres::{validate_pinpoints, AnyResPixels, AnyResProcessor, DEFAULT_GRID_PINPOINTS};
pub use anyres_tokens::{unpad_ranges, TilePacking};
pub use best_resolution::{padding_offset, patch_output_size, select_best_resolution};
pub use decode::{decode_rgb, decode_rgb_bytes, dynamic_to_rgb, ImageFormat};
pub use rgb::{cmyk_to_rgb, Rgb8Image};
pub use jpeg::{decode_jpeg, MAX_PIXELS};
pub use processor::{
    center_crop, expand2square, load_pixel_values, preprocess_rgb, resize_output_size,
    ClipImageProcessor, PixelValues, CLIP_MEAN, CLIP_STD,
};
pub use resample::{resize_bicubic, resize_bicubic_region};
pub use write::{
    read_f32_tensor, read_i64_tensor, tensor_names, write_anyres_pixel_values, write_pixel_values,
};

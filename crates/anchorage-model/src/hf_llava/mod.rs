//! Hugging Face LLaVA and LLaVA-NeXT checkpoints (`LlavaForConditionalGeneration`,
//! `LlavaNextForConditionalGeneration`, in the Hub's transformers-4 key layout or transformers
//! 5's) loaded as anchorage's composed model, with transformers 5.23's semantics:
//!
//! ```text
//! pixel_values [P,3,S,S] -> CLIP tower -> hidden_states[l] for each vision_feature_layer
//!   (CLS dropped for `default`) -> concat on features -> multi_modal_projector (mlp connector)
//!   -> LLaVA: the rows; LLaVA-NeXT: base tile rows, then the tile grid unpadded to the image with
//!      an image_newline after each row (pack.rs)
//!   -> spliced in at the one -200 of the ids -> LLM -> logits
//! ```
//!
//! `config.rs` reads config.json, `keys.rs` finds each part's keys, `load.rs` builds the model
//! through the vision / LLM / connector crates' loaders, `model.rs` runs it, `processor.rs` is the
//! folder's image processor and `inspect.rs` what `train inspect llava` writes.

mod config;
mod error;
mod inspect;
mod keys;
mod load;
mod model;
mod pack;
mod parts;
mod processor;

pub use config::{HfLlavaConfig, LlavaKind, SelectStrategy};
pub use error::HfLlavaError;
pub use inspect::inspect_tensors;
pub use keys::KeyLayout;
pub use model::{HfLlava, HfLlavaOutput};
pub use pack::{pack_image_features, unpad_ranges, AnyResGrid};
pub use parts::{is_llava_folder, load_llm_part, load_projector_part, load_vision_part};
pub use processor::{HfImageProcessor, ProcessedImage};

#[cfg(test)]
mod tests;

//! The demo world's frozen towers, made by anchorage itself (no package ships CLIP or Llama
//! weights): a tiny CLIP-architecture vision tower and a small Llama-architecture LLM, trained in
//! a few minutes each on a CPU on the world of `anchorage_data::synth`, and saved as Hugging Face
//! folders that the real loaders (`anchorage_vision::load_clip_vision_with`,
//! `anchorage_llm::load_llm`) read like any checkpoint. See `docs/demo.md`.

mod error;
pub mod llm;
mod save;
mod schedule;
mod settings;
#[cfg(test)]
mod tests;
mod towers;
pub mod vision;

pub use error::DemoError;
pub use llm::{train_llm, Curriculum, Draw, LlmSpec};
pub use save::{
    preprocessor_config_json, save_clip_vision, save_llm,
    tokenizer_config_json, CONFIG, PREPROCESSOR, TOKENIZER, TOKENIZER_CONFIG, WEIGHTS,
};
pub use schedule::{TrainLog, TrainSpec};
pub use towers::{ensure_towers, ensure_towers_with, TowerPaths, TowerSpecs, STAMP, LLM_FORMAT, VISION_FORMAT};
pub use vision::{train_vision, VisionProbe, VisionSpec};

//! LLaVA data for anchorage: data-set manifests, records, conversation templates, tokens and labels,
//! images, the sampler and the one step loader.
//!
//! This crate knows nothing of models: it turns files on disk into ids, label masks and pixels.

mod check;
mod count;
mod dataset;
mod error;
mod fault;
pub mod image;
mod manifest;
mod options;
mod paths;
mod rng;
mod sampler;
mod source;
mod step_loader;
mod synthetic;
pub mod synth;
pub mod text;

pub use check::{check_dataset, check_image, CheckOptions, CheckReport, FaultEntry};
pub use count::count_json_array;
pub use dataset::{AnyResData, AnyResViews, DatasetConfig, LlavaDataset, OverLength, Sample};
pub use error::DataError;
pub use fault::{FaultReason, SampleFault};
pub use image::{
    load_pixel_values, select_best_resolution, AnyResPixels, AnyResProcessor, ClipImageProcessor, PixelValues,
};
pub use manifest::{Manifest, ManifestSource, SampleCount, SampleCountSource};
pub use options::{Aspect, Template};
pub use paths::resolve_image_path;
pub use rng::SplitMix64;
pub use source::{SampleResult, SampleSource, Skipped};
pub use step_loader::{load_parallel, LoadedStep, StepLayout};
pub use synthetic::SyntheticSource;
pub use sampler::{
    epoch_order, length_grouped, length_grouped_from, modality_length_grouped_with, rank_indices, split_to_even_chunks,
    SamplerKind,
};

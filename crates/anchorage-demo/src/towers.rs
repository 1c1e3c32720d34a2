//! `ensure_towers`: the demo's frozen towers as Hugging Face folders, trained once and reused.
//!
//! Each folder holds a `anchorage-demo.json` stamp (what was trained: kind, seed, spec, format
//! version) written last; a folder whose stamp equals what would be trained now is reused, any
//! other is trained again into a temporary folder and renamed into place.

use std::path::{Path, PathBuf};

use anchorage_data::synth::{train_tokenizer, TokenizerOptions, TOKENIZER_VERSION};
use anchorage_data::text::TextTokenizer;
use burn::tensor::backend::AutodiffBackend;
use serde_json::{json, Value};

use crate::llm::{train_llm, LlmSpec};
use crate::save::{save_clip_vision, save_llm, write_json, TOKENIZER};
use crate::vision::{train_vision, VisionSpec};
use crate::DemoError;

/// Bumped whenever what a vision stamp describes changes meaning (world, training code).
pub const VISION_FORMAT: u32 = 2;
/// The same for the LLM (its stamp also holds the tokenizer's options and version). 3: drills
/// with the world's captions (2026-12-02). 4: each slice's samples packed into one row, slices cut
/// to equal token counts (2026-12-03).
pub const LLM_FORMAT: u32 = 4;
pub const STAMP: &str = "anchorage-demo.json";

/// Where the towers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TowerPaths {
    /// A CLIP vision folder (`anchorage_vision::load_clip_vision_with`).
    pub vision: PathBuf,
    /// A Llama folder with its tokenizer (`anchorage_llm::load_llm`).
    pub llm: PathBuf,
    /// Which of the two were trained by this call (false: reused).
    pub trained_vision: bool,
    pub trained_llm: bool,
}

/// What the towers are made of (the defaults unless a test shrinks them).
#[derive(Debug, Clone, PartialEq)]
pub struct TowerSpecs {
    pub vision: VisionSpec,
    pub llm: LlmSpec,
    pub tokenizer: TokenizerOptions,
}

impl Default for TowerSpecs {
    fn default() -> Self {
        let tokenizer = TokenizerOptions::default();
        Self {
            vision: VisionSpec::default(),
            llm: LlmSpec::with_presence_curriculum(tokenizer.vocab_size),
            tokenizer,
        }
    }
}

fn stamp(format: u32, kind: &str, seed: u64, spec: Value) -> Value {
    json!({"format": format, "kind": kind, "seed": seed, "spec": spec})
}

fn read_stamp(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(STAMP)).ok()?;
    serde_json::from_str(&text).ok()
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, DemoError> {
    serde_json::to_value(v).map_err(|source| DemoError::Json {
        path: STAMP.into(),
        source,
    })
}

/// Builds a folder under a temporary name, stamps it, then renames it into `dir`.
fn build_into(dir: &Path, want: &Value, build: impl FnOnce(&Path) -> Result<(), DemoError>) -> Result<(), DemoError> {
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DemoError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| DemoError::io(&tmp, e))?;
    build(&tmp)?;
    write_json(&tmp.join(STAMP), want)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| DemoError::io(dir, e))
}

/// [`ensure_towers_with`] with the default specs.
pub fn ensure_towers<B: AutodiffBackend>(dir: &Path, seed: u64, device: &B::Device) -> Result<TowerPaths, DemoError> {
    ensure_towers_with::<B>(dir, seed, &TowerSpecs::default(), device)
}

/// Makes sure `dir/vision` and `dir/llm` hold the towers of `seed` and `specs`, training what is
/// missing or stale (on `B`, an autodiff backend).
pub fn ensure_towers_with<B: AutodiffBackend>(
    dir: &Path,
    seed: u64,
    specs: &TowerSpecs,
    device: &B::Device,
) -> Result<TowerPaths, DemoError> {
    let vision_dir = dir.join("vision");
    let llm_dir = dir.join("llm");

    let want_vision = stamp(VISION_FORMAT, "clip_vision", seed, to_value(&specs.vision)?);
    let trained_vision = read_stamp(&vision_dir).as_ref() != Some(&want_vision);
    let tok_opts = &specs.tokenizer;
    let tok_spec = json!({"version": TOKENIZER_VERSION, "seed": tok_opts.seed, "vocab_size": tok_opts.vocab_size, "scenes": tok_opts.scenes});
    let want_llm = stamp(
        LLM_FORMAT,
        "llama",
        seed,
        json!({"llm": to_value(&specs.llm)?, "tokenizer": tok_spec}),
    );
    let trained_llm = read_stamp(&llm_dir).as_ref() != Some(&want_llm);

    let vision = || -> Result<(), DemoError> {
        if !trained_vision {
            return Ok(());
        }
        tracing::info!(dir = %vision_dir.display(), "training the demo vision tower");
        build_into(&vision_dir, &want_vision, |tmp| {
            let (probe, log) = train_vision::<B>(&specs.vision, seed, device)?;
            let (first, last) = log.first_last(20);
            tracing::info!(seconds = log.seconds, first, last, "vision tower trained");
            save_clip_vision(tmp, &specs.vision.config, &probe.tower)
        })
    };
    let llm = || -> Result<(), DemoError> {
        if !trained_llm {
            return Ok(());
        }
        tracing::info!(dir = %llm_dir.display(), "training the demo LLM");
        build_into(&llm_dir, &want_llm, |tmp| {
            let trained = train_tokenizer(tok_opts)?;
            let tok_path = tmp.join(TOKENIZER);
            std::fs::write(&tok_path, &trained.json).map_err(|e| DemoError::io(&tok_path, e))?;
            let tok = TextTokenizer::from_file(&tok_path)?;
            let (llm, log) = train_llm::<B>(&specs.llm, &tok, seed, device)?;
            let (first, last) = log.first_last(20);
            tracing::info!(seconds = log.seconds, first, last, "LLM trained");
            save_llm(tmp, &llm, &trained.json)
        })
    };
    // Side by side: each tower's step leaves a core idle part of the time (burn-flex runs
    // elementwise work on one thread), which the other fills. Each starts from its own seed
    // (`seeded_init`) and its steps are the same operations either way, so the towers are the
    // same as trained one after the other.
    let (vision, llm) = std::thread::scope(|scope| {
        let vision = scope.spawn(vision);
        let llm = llm();
        let vision = vision.join().unwrap_or_else(|_| Err(DemoError::Train("the vision tower's training thread panicked".into())));
        (vision, llm)
    });
    vision?;
    llm?;
    Ok(TowerPaths {
        vision: vision_dir,
        llm: llm_dir,
        trained_vision,
        trained_llm,
    })
}

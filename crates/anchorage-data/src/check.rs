//! `train data check`: validate a local copy of a data set against its manifest. The annotation
//! file is streamed (never held whole); per record only the id and image path are kept for the
//! image pass, which checks existence and decodes every image in parallel with a progress bar.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use crate::image::decode_rgb;
use crate::text::{for_each_record, tokenize_record, validate_structure, Record, TextTokenizer, TokenizeError};
use crate::{resolve_image_path, DataError, FaultReason, Manifest, SampleFault};

/// What to check beyond structure and images.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Tokenise every record to find over-length samples and LLaVA's tokenization mismatches.
    pub tokenizer: Option<PathBuf>,
    /// The model's maximum length (LLaVA: 2048).
    pub max_len: usize,
    /// Tokens one image becomes after splicing (576 for CLIP ViT-L/14-336 with the MLP).
    pub image_tokens: usize,
    /// Draw a progress bar on stderr (hidden automatically when stderr is not a terminal).
    pub progress: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            tokenizer: None,
            max_len: 2048,
            image_tokens: 576,
            progress: true,
        }
    }
}

/// One unusable sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultEntry {
    pub id: String,
    pub reason: FaultReason,
    pub detail: String,
}

/// The JSON report of `train data check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub manifest: String,
    pub annotations: PathBuf,
    pub image_root: PathBuf,
    pub samples: usize,
    pub expected_samples: u64,
    pub with_image: usize,
    pub text_only: usize,
    pub images_checked: usize,
    pub tokenized: bool,
    pub bad_samples: usize,
    pub bad_fraction: f64,
    /// Every reason with its count (zeros included).
    pub counts: BTreeMap<&'static str, usize>,
    /// Every unusable sample, in file order.
    pub faults: Vec<FaultEntry>,
}

/// Runs the whole check. A missing or syntactically broken annotation file is an error; every
/// problem with a sample is a fault in the report.
pub fn check_dataset(manifest_path: &Path, root: &Path, opts: &CheckOptions) -> Result<CheckReport, DataError> {
    let manifest = Manifest::load(manifest_path)?;
    let annotations = root.join(&manifest.annotations);
    let image_root = root.join(&manifest.image_root);
    let tokenizer = opts.tokenizer.as_deref().map(TextTokenizer::from_file).transpose()?;

    let text = text_pass(&manifest, &annotations, &image_root, tokenizer.as_ref(), opts)?;
    if text.samples as u64 != manifest.expected_samples {
        tracing::warn!(counted = text.samples, expected = manifest.expected_samples, "sample count differs from the manifest");
    }
    let mut faults = text.faults;
    faults.extend(image_pass(&text.jobs, opts.progress));
    faults.sort_by_key(|(i, _)| *i);
    let faults: Vec<FaultEntry> = faults.into_iter().map(|(_, f)| f).collect();

    let mut counts: BTreeMap<&'static str, usize> = FaultReason::ALL.iter().map(|r| (r.name(), 0)).collect();
    for f in &faults {
        *counts.entry(f.reason.name()).or_default() += 1;
    }
    let (samples, bad_samples) = (text.samples, faults.len());
    Ok(CheckReport {
        manifest: manifest.name,
        annotations,
        image_root,
        samples,
        expected_samples: manifest.expected_samples,
        with_image: text.with_image,
        text_only: text.text_only,
        images_checked: text.jobs.len(),
        tokenized: tokenizer.is_some(),
        bad_samples,
        bad_fraction: if samples == 0 { 0.0 } else { bad_samples as f64 / samples as f64 },
        counts,
        faults,
    })
}

/// A fault found in record `index` (file order), with the sample's id.
type IndexedFault = (usize, FaultEntry);

fn indexed(index: usize, id: &str, f: SampleFault) -> IndexedFault {
    (index, FaultEntry { id: id.to_string(), reason: f.reason, detail: f.detail })
}

/// What the streamed pass over the annotation file found.
struct TextPass {
    samples: usize,
    with_image: usize,
    text_only: usize,
    faults: Vec<IndexedFault>,
    /// Images to check: record index, sample id, resolved path.
    jobs: Vec<(usize, String, PathBuf)>,
}

/// Streams the annotation file: structure, tokens (with a tokenizer) and image paths per record.
fn text_pass(manifest: &Manifest, annotations: &Path, image_root: &Path, tokenizer: Option<&TextTokenizer>, opts: &CheckOptions) -> Result<TextPass, DataError> {
    let mut pass = TextPass { samples: 0, with_image: 0, text_only: 0, faults: Vec::new(), jobs: Vec::new() };
    let mut token_error: Option<DataError> = None;
    pass.samples = for_each_record(annotations, |i, rec| {
        let rec = match rec {
            Ok(r) => r,
            Err(msg) => return pass.faults.push(indexed(i, &format!("#{i}"), SampleFault::new(FaultReason::Malformed, msg))),
        };
        if let Err(f) = validate_structure(&rec, manifest.template) {
            return pass.faults.push(indexed(i, &rec.id, f));
        }
        if let Some(tok) = tokenizer {
            match token_fault(&rec, manifest, tok, opts) {
                Ok(None) => {}
                Ok(Some(f)) => return pass.faults.push(indexed(i, &rec.id, f)),
                Err(e) => {
                    token_error.get_or_insert(e);
                    return;
                }
            }
        }
        match &rec.image {
            None => pass.text_only += 1,
            Some(rel) => {
                pass.with_image += 1;
                match resolve_image_path(image_root, rel) {
                    Ok(path) => pass.jobs.push((i, rec.id.clone(), path)),
                    Err(f) => pass.faults.push(indexed(i, &rec.id, f)),
                }
            }
        }
    })?;
    match token_error {
        Some(e) => Err(e),
        None => Ok(pass),
    }
}

/// Tokenises a record as training will: over-length after splicing `opts.image_tokens` per image,
/// LLaVA's tokenization mismatch, or the record's own fault. `Err` is a tokenizer failure, which
/// ends the check.
fn token_fault(rec: &Record, manifest: &Manifest, tok: &TextTokenizer, opts: &CheckOptions) -> Result<Option<SampleFault>, DataError> {
    match tokenize_record(rec, manifest.template, tok, opts.max_len) {
        Ok(s) => {
            let n = s.image_count();
            let spliced = s.full_len - n + n * opts.image_tokens;
            if spliced > opts.max_len {
                let detail = format!("{spliced} tokens after splicing > max length {}", opts.max_len);
                return Ok(Some(SampleFault::new(FaultReason::OverLength, detail)));
            }
            if s.mismatch {
                let detail = "LLaVA's tokenization mismatch: every label would be ignored";
                return Ok(Some(SampleFault::new(FaultReason::TokenizationMismatch, detail)));
            }
            Ok(None)
        }
        Err(TokenizeError::Fault(f)) => Ok(Some(f)),
        Err(TokenizeError::Data(e)) => Err(e),
    }
}

/// Checks every image in parallel, with a progress bar when asked.
fn image_pass(jobs: &[(usize, String, PathBuf)], progress: bool) -> Vec<IndexedFault> {
    let bar = if progress {
        let bar = ProgressBar::new(jobs.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{spinner} images {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let faults = jobs
        .par_iter()
        .filter_map(|(i, id, path)| {
            let fault = check_image(path);
            bar.inc(1);
            fault.map(|f| indexed(*i, id, f))
        })
        .collect();
    bar.finish_and_clear();
    faults
}

/// Missing, or present but not decodable as Pillow would decode it.
pub fn check_image(path: &Path) -> Option<SampleFault> {
    if !path.exists() {
        return Some(SampleFault::new(FaultReason::MissingImage, format!("{} does not exist", path.display())));
    }
    match decode_rgb(path) {
        Ok(_) => None,
        Err(e) => Some(SampleFault::new(FaultReason::CorruptImage, e.to_string())),
    }
}

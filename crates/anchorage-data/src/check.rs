//! `train data check`: validate a local copy of a data set against its manifest. The annotation
//! file is streamed (never held whole); per record only the id and image path are kept for the
//! image pass, which checks existence and decodes every image in parallel with a progress bar.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use crate::image::decode_rgb;
use crate::text::{for_each_record, tokenize_record, validate_structure, TextTokenizer, TokenizeError};
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

    let mut faults: Vec<(usize, FaultEntry)> = Vec::new();
    let mut jobs: Vec<(usize, String, PathBuf)> = Vec::new();
    let (mut with_image, mut text_only) = (0, 0);
    let push = |faults: &mut Vec<(usize, FaultEntry)>, i: usize, id: &str, f: SampleFault| {
        faults.push((
            i,
            FaultEntry {
                id: id.to_string(),
                reason: f.reason,
                detail: f.detail,
            },
        ))
    };
    let mut token_error: Option<DataError> = None;
    let samples = for_each_record(&annotations, |i, rec| {
        let rec = match rec {
            Ok(r) => r,
            Err(msg) => {
                push(&mut faults, i, &format!("#{i}"), SampleFault::new(FaultReason::Malformed, msg));
                return;
            }
        };
        if let Err(f) = validate_structure(&rec, manifest.template) {
            push(&mut faults, i, &rec.id, f);
            return;
        }
        if let Some(tok) = &tokenizer {
            match tokenize_record(&rec, manifest.template, tok, opts.max_len) {
                Ok(s) => {
                    let n = s.image_count();
                    let spliced = s.full_len - n + n * opts.image_tokens;
                    if spliced > opts.max_len {
                        let detail = format!("{spliced} tokens after splicing > max length {}", opts.max_len);
                        push(&mut faults, i, &rec.id, SampleFault::new(FaultReason::OverLength, detail));
                        return;
                    }
                    if s.mismatch {
                        let detail = "LLaVA's tokenization mismatch: every label would be ignored";
                        push(&mut faults, i, &rec.id, SampleFault::new(FaultReason::TokenizationMismatch, detail));
                        return;
                    }
                }
                Err(TokenizeError::Fault(f)) => {
                    push(&mut faults, i, &rec.id, f);
                    return;
                }
                Err(TokenizeError::Data(e)) => {
                    token_error.get_or_insert(e);
                    return;
                }
            }
        }
        match &rec.image {
            None => text_only += 1,
            Some(rel) => {
                with_image += 1;
                match resolve_image_path(&image_root, rel) {
                    Ok(path) => jobs.push((i, rec.id.clone(), path)),
                    Err(f) => push(&mut faults, i, &rec.id, f),
                }
            }
        }
    })?;
    if let Some(e) = token_error {
        return Err(e);
    }
    if samples as u64 != manifest.expected_samples {
        tracing::warn!(counted = samples, expected = manifest.expected_samples, "sample count differs from the manifest");
    }

    let bar = if opts.progress {
        let bar = ProgressBar::new(jobs.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{spinner} images {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let image_faults: Vec<(usize, FaultEntry)> = jobs
        .par_iter()
        .filter_map(|(i, id, path)| {
            let fault = check_image(path);
            bar.inc(1);
            fault.map(|f| {
                (
                    *i,
                    FaultEntry {
                        id: id.clone(),
                        reason: f.reason,
                        detail: f.detail,
                    },
                )
            })
        })
        .collect();
    bar.finish_and_clear();
    faults.extend(image_faults);
    faults.sort_by_key(|(i, _)| *i);
    let faults: Vec<FaultEntry> = faults.into_iter().map(|(_, f)| f).collect();

    let mut counts: BTreeMap<&'static str, usize> = FaultReason::ALL.iter().map(|r| (r.name(), 0)).collect();
    for f in &faults {
        *counts.entry(f.reason.name()).or_default() += 1;
    }
    let bad_samples = faults.len();
    Ok(CheckReport {
        manifest: manifest.name,
        annotations,
        image_root,
        samples,
        expected_samples: manifest.expected_samples,
        with_image,
        text_only,
        images_checked: jobs.len(),
        tokenized: tokenizer.is_some(),
        bad_samples,
        bad_fraction: if samples == 0 { 0.0 } else { bad_samples as f64 / samples as f64 },
        counts,
        faults,
    })
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

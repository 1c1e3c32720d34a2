//! A [`SampleSource`] over a LLaVA annotation file: LLaVA's templates, tokenisation and labels
//! (anchorage-data `tokenize_record`) and its image path (`load_pixel_values`), with every
//! problem turned into a counted skip reason instead of an error.

use std::path::{Component, Path, PathBuf};

use anchorage_data::text::{read_records, tokenize_record, Record, TextTokenizer, TokenizeError};
use anchorage_data::{load_pixel_values, Aspect, ClipImageProcessor, FaultReason, Template};

use super::source::{Sample, SampleSource, SkipReason};
use crate::TrainError;

/// Records in memory (parsed once, streamed from the file), processed on demand by index.
pub struct LlavaSource {
    records: Vec<Result<Record, String>>,
    tokenizer: TextTokenizer,
    template: Template,
    aspect: Aspect,
    processor: ClipImageProcessor,
    image_root: PathBuf,
    max_len: usize,
    /// Tokens each image becomes after the connector: over-length is judged after splicing.
    image_tokens: usize,
}

/// What [`LlavaSource::open`] needs.
pub struct LlavaSourceConfig<'a> {
    pub annotations: &'a Path,
    pub image_root: PathBuf,
    pub tokenizer: &'a Path,
    pub template: Template,
    pub aspect: Aspect,
    pub processor: ClipImageProcessor,
    pub max_len: usize,
    pub image_tokens: usize,
}

impl LlavaSource {
    pub fn open(c: LlavaSourceConfig<'_>) -> Result<Self, TrainError> {
        let records = read_records(c.annotations)?;
        let tokenizer = TextTokenizer::from_file(c.tokenizer)?;
        tracing::info!(file = %c.annotations.display(), records = records.len(), "data set opened");
        Ok(Self {
            records,
            tokenizer,
            template: c.template,
            aspect: c.aspect,
            processor: c.processor,
            image_root: c.image_root,
            max_len: c.max_len,
            image_tokens: c.image_tokens,
        })
    }

    /// The tokenizer's padding id (LLaVA pads with unk = 0).
    pub fn pad_id(&self) -> i64 {
        self.tokenizer.pad_id()
    }

    fn image_path(&self, rel: &str) -> Result<PathBuf, SkipReason> {
        let p = Path::new(rel);
        if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(skip(FaultReason::BadImagePath, format!("image path `{rel}` is absolute or leaves the image root")));
        }
        Ok(self.image_root.join(p))
    }
}

fn skip(reason: FaultReason, detail: String) -> SkipReason {
    SkipReason { reason: reason.name().to_string(), detail }
}

impl SampleSource for LlavaSource {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn get(&self, index: usize) -> Result<Sample, (String, SkipReason)> {
        let record = match &self.records[index] {
            Ok(r) => r,
            Err(msg) => return Err((format!("#{index}"), skip(FaultReason::Malformed, msg.clone()))),
        };
        let id = record.id.clone();
        let tokens = tokenize_record(record, self.template, &self.tokenizer, self.max_len).map_err(|e| {
            let reason = match e {
                TokenizeError::Fault(f) => skip(f.reason, f.detail),
                TokenizeError::Data(d) => skip(FaultReason::Malformed, d.to_string()),
            };
            (id.clone(), reason)
        })?;
        if tokens.mismatch {
            // LLaVA keeps such a sample with every label ignored: it adds no loss and no gradient.
            return Err((id, skip(FaultReason::TokenizationMismatch, "label rounds do not add up; every label ignored".into())));
        }
        let images = tokens.image_count();
        let spliced = tokens.full_len - images + images * self.image_tokens;
        if spliced > self.max_len {
            return Err((id, skip(FaultReason::OverLength, format!("{spliced} tokens after splicing > max_length {}", self.max_len))));
        }
        let pixels = match (&record.image, images) {
            (Some(rel), n) if n > 0 => {
                let path = self.image_path(rel).map_err(|r| (id.clone(), r))?;
                if !path.is_file() {
                    return Err((id, skip(FaultReason::MissingImage, format!("{} does not exist", path.display()))));
                }
                let px = load_pixel_values(&path, self.aspect, &self.processor)
                    .map_err(|e| (id.clone(), skip(FaultReason::CorruptImage, e.to_string())))?;
                Some(px.data)
            }
            (None, n) if n > 0 => {
                return Err((id, skip(FaultReason::Malformed, "an image placeholder but no `image` in the record".into())));
            }
            _ => None,
        };
        let (input_ids, labels) = (tokens.input_ids, tokens.labels);
        Ok(Sample { id, input_ids, labels, pixels })
    }

    fn modality_lengths(&self) -> Vec<i64> {
        self.records.iter().map(|r| r.as_ref().map_or(0, Record::modality_length)).collect()
    }

    fn image_size(&self) -> usize {
        self.processor.crop_size()
    }
}

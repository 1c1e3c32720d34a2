//! A LLaVA data set for training: records parsed once (streamed, the JSON text is never held),
//! each sample tokenised and its image preprocessed on demand, every problem a counted fault.

use std::path::PathBuf;

use crate::image::{decode_rgb, load_pixel_values, AnyResProcessor, ClipImageProcessor, PixelValues, TilePacking};
use crate::text::{read_records, tokenize_record, Record, RecordResult, TextTokenizer, TokenizeError};
use crate::{check_image, resolve_image_path, Aspect, DataError, FaultReason, SampleFault, Template};

/// What an over-length sample becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLength {
    /// Skip it and count it (anchorage's default).
    Skip,
    /// Keep it truncated to `max_len`, as LLaVA's collator does.
    Truncate,
}

/// Where the data is and how to turn it into samples.
#[derive(Debug, Clone)]
pub struct DatasetConfig {
    pub annotations: PathBuf,
    pub image_root: PathBuf,
    pub tokenizer: PathBuf,
    pub template: Template,
    pub aspect: Aspect,
    pub processor: ClipImageProcessor,
    /// The model's maximum length (`model_max_length`), in tokens after splicing.
    pub max_len: usize,
    /// Tokens one image becomes after the connector (over-length is judged after splicing).
    pub image_tokens: usize,
    pub over_length: OverLength,
    /// With [`Aspect::AnyRes`]: how images are tiled and packed (then `image_tokens` is unused).
    pub anyres: Option<AnyResData>,
}

/// What an AnyRes data set needs: the tiling, and how the model packs the connector's tiles (for
/// each sample's visual-token count after packing).
#[derive(Debug, Clone, PartialEq)]
pub struct AnyResData {
    pub processor: AnyResProcessor,
    pub packing: TilePacking,
}

/// The grid views of an AnyRes sample (its base view is the sample's `pixels`).
#[derive(Debug, Clone, PartialEq)]
pub struct AnyResViews {
    /// The grid tiles, row-major, each `[3, S, S]`.
    pub tiles: Vec<PixelValues>,
    /// The original `(height, width)` (transformers' `image_sizes`).
    pub image_size: (usize, usize),
    /// The tile grid `(rows, columns)` (`get_anyres_image_grid_shape`).
    pub grid: (usize, usize),
}

/// One usable sample, before batching.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: String,
    /// Token ids with -200 where the image goes.
    pub input_ids: Vec<i64>,
    /// Labels with -100 where nothing is supervised.
    pub labels: Vec<i64>,
    /// The preprocessed image, `None` for text-only samples (they get zeros in a batch).
    pub pixels: Option<PixelValues>,
    /// With AnyRes, the tiles after the base view (`pixels`); `None` otherwise.
    pub anyres: Option<AnyResViews>,
    /// LLaVA's tokenization mismatch: kept (as LLaVA keeps it) with every label ignored.
    pub mismatch: bool,
}

pub struct LlavaDataset {
    records: Vec<RecordResult>,
    tokenizer: TextTokenizer,
    cfg: DatasetConfig,
}

impl LlavaDataset {
    pub fn open(cfg: DatasetConfig) -> Result<Self, DataError> {
        let records = read_records(&cfg.annotations)?;
        let tokenizer = TextTokenizer::from_file(&cfg.tokenizer)?;
        tracing::info!(file = %cfg.annotations.display(), records = records.len(), "data set opened");
        Ok(Self {
            records,
            tokenizer,
            cfg,
        })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The tokenizer's vocabulary, added tokens included: every id it can produce is below this.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size()
    }

    pub fn config(&self) -> &DatasetConfig {
        &self.cfg
    }

    pub fn pad_id(&self) -> i64 {
        self.tokenizer.pad_id()
    }

    pub fn image_size(&self) -> usize {
        self.cfg.processor.crop_size()
    }

    /// LLaVA's modality lengths for the grouped sampler (0 for unparsable records).
    pub fn modality_lengths(&self) -> Vec<i64> {
        self.records.iter().map(|r| r.as_ref().map_or(0, Record::modality_length)).collect()
    }

    /// The record's id (or `#index` for an unparsable element).
    pub fn id(&self, index: usize) -> String {
        match &self.records[index] {
            Ok(r) => r.id.clone(),
            Err(_) => format!("#{index}"),
        }
    }

    /// Tokenise and load one sample. `Err` carries the id and why the sample is unusable; a
    /// tokenizer failure is reported as malformed for that sample.
    pub fn get(&self, index: usize) -> Result<Sample, (String, SampleFault)> {
        let record = match &self.records[index] {
            Ok(r) => r,
            Err(msg) => return Err((format!("#{index}"), SampleFault::new(FaultReason::Malformed, msg.clone()))),
        };
        let fail = |f: SampleFault| (record.id.clone(), f);
        if self.cfg.template == Template::Plain && !record.has_image() {
            return Err(fail(SampleFault::new(FaultReason::Malformed, "plain sample without an image")));
        }
        let t = tokenize_record(record, self.cfg.template, &self.tokenizer, self.cfg.max_len).map_err(|e| match e {
            TokenizeError::Fault(f) => fail(f),
            TokenizeError::Data(d) => fail(SampleFault::new(FaultReason::Malformed, d.to_string())),
        })?;
        let n = t.image_count();
        if self.cfg.anyres.is_none() {
            // Judged before the image is read: the count does not depend on it.
            self.check_length(t.full_len, n, self.cfg.image_tokens).map_err(fail)?;
        }
        // A record with an image but no `<image>` in its turns: LLaVA trains on the text alone
        // and leaves the image unused (`prepare_inputs_labels_for_multimodal`, num_images == 0).
        let image = record.image.as_ref().filter(|_| n > 0);
        let path = match image {
            None => None,
            Some(rel) => Some(resolve_image_path(&self.cfg.image_root, rel).map_err(fail)?),
        };
        let loaded = match (&path, &self.cfg.anyres) {
            (None, _) => Ok((None, None)),
            (Some(path), None) => load_pixel_values(path, self.cfg.aspect, &self.cfg.processor).map(|p| (Some(p), None)),
            (Some(path), Some(anyres)) => load_anyres(path, &anyres.processor).map(|(p, v)| (Some(p), Some(v))),
        };
        let (pixels, anyres) = match loaded {
            Ok(v) => v,
            Err(e) => {
                let path = path.unwrap_or_default();
                let fault = check_image(&path).unwrap_or_else(|| SampleFault::new(FaultReason::CorruptImage, e.to_string()));
                return Err(fail(fault));
            }
        };
        if let Some(a) = &self.cfg.anyres {
            // AnyRes: the sample's real visual-token count, after packing its grid.
            let per_image = anyres.as_ref().map_or(self.cfg.image_tokens, |v| a.packing.packed_tokens(v.grid, v.image_size));
            self.check_length(t.full_len, n, per_image).map_err(fail)?;
        }
        Ok(Sample {
            id: record.id.clone(),
            input_ids: t.input_ids,
            labels: t.labels,
            pixels,
            anyres,
            mismatch: t.mismatch,
        })
    }
}

impl LlavaDataset {
    /// An over-length fault (when they are skipped) for `full_len` tokens with `n` placeholders,
    /// each becoming `per_image` tokens.
    fn check_length(&self, full_len: usize, n: usize, per_image: usize) -> Result<(), SampleFault> {
        let spliced = full_len - n + n * per_image;
        if spliced > self.cfg.max_len && self.cfg.over_length == OverLength::Skip {
            let detail = format!("{spliced} tokens after splicing > max length {}", self.cfg.max_len);
            return Err(SampleFault::new(FaultReason::OverLength, detail));
        }
        Ok(())
    }
}

/// An AnyRes image: the base view, and the grid tiles with the image size and grid.
fn load_anyres(path: &std::path::Path, processor: &AnyResProcessor) -> Result<(PixelValues, AnyResViews), DataError> {
    let rgb = decode_rgb(path)?;
    let views = processor.preprocess(&rgb);
    let (rows, cols) = processor.grid_shape(views.image_size);
    let mut tiles = views.tiles.into_iter();
    let base = tiles.next().ok_or_else(|| DataError::ImageDecode { path: path.to_path_buf(), message: "AnyRes made no views".into() })?;
    let image_size = (views.image_size.0 as usize, views.image_size.1 as usize);
    Ok((base, AnyResViews { tiles: tiles.collect(), image_size, grid: (rows as usize, cols as usize) }))
}

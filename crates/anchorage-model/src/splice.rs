//! Splicing image features into the text embeddings, with the semantics of LLaVA's
//! `prepare_inputs_labels_for_multimodal` (haotian-liu/LLaVA `llava/model/llava_arch.py`):
//! each `-200` placeholder is replaced by that image's feature tokens (their labels ignored),
//! sequences are truncated to the maximum length after splicing, right padded, and positions
//! restart at 0 for every sample.
//!
//! The host computes a [`SplicePlan`] from the ids; the device then does one row gather over
//! `[text embeddings; image features; a zero row]`, so gradients flow to the image features (the
//! connector) through the gather's backward (a scatter-add), with no per-sample device work.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::ModelError;

/// LLaVA's `IMAGE_TOKEN_INDEX`: the placeholder id in `input_ids`, never embedded.
pub const IMAGE_TOKEN_INDEX: i64 = -200;
/// LLaVA's `IGNORE_INDEX` for labels that are not supervised.
pub const IGNORE_INDEX: i64 = -100;

/// One sample before splicing (padding already stripped).
#[derive(Debug, Clone)]
pub struct SpliceInput<'a> {
    /// Token ids with [`IMAGE_TOKEN_INDEX`] placeholders.
    pub input_ids: &'a [i64],
    /// Labels, [`IGNORE_INDEX`] where not supervised; same length as `input_ids`.
    pub labels: &'a [i64],
    /// For each placeholder in order, the index of its image in the batch's feature tensor.
    pub images: &'a [usize],
}

/// Where one image's tokens sit in a spliced sequence (after truncation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSpan {
    pub start: usize,
    pub len: usize,
}

/// The layout of a spliced batch, computed on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct SplicePlan {
    /// Batch size and padded length after splicing.
    pub batch: usize,
    pub len: usize,
    /// Text positions before splicing (`input_ids` padded to this length).
    pub text_len: usize,
    /// Tokens of each image in the feature table (all equal without AnyRes).
    pub image_tokens: Vec<usize>,
    /// Where each image's first token is in the feature table (the prefix sums of `image_tokens`).
    pub image_offsets: Vec<usize>,
    /// Images in the feature table.
    pub num_images: usize,
    /// `[batch * text_len]` ids to embed: placeholders and padding replaced by `pad_id`.
    pub text_ids: Vec<i64>,
    /// `[batch * len]` rows of the gather table (see [`splice_embeddings`]).
    pub rows: Vec<i64>,
    /// `[batch * len]` labels after splicing, [`IGNORE_INDEX`] for images and padding.
    pub labels: Vec<i64>,
    /// `[batch * len]` true on real tokens.
    pub attention_mask: Vec<bool>,
    /// `[batch * len]` positions 0.. over real tokens, 0 on padding.
    pub position_ids: Vec<i64>,
    /// Real length of each sample after splicing and truncation.
    pub lengths: Vec<usize>,
    /// Image spans per sample.
    pub image_spans: Vec<Vec<ImageSpan>>,
}

enum Piece {
    Text { row: usize, label: i64 },
    Image { image: usize, token: usize },
}

impl SplicePlan {
    /// Lays out a batch: `image_tokens` features per image, `num_images` images in the feature
    /// tensor, truncation to `max_len` after splicing, `pad_id` for the embedded text ids.
    pub fn new(
        samples: &[SpliceInput<'_>],
        image_tokens: usize,
        num_images: usize,
        max_len: usize,
        pad_id: i64,
    ) -> Result<Self, ModelError> {
        Self::with_image_tokens(samples, &vec![image_tokens; num_images], max_len, pad_id)
    }

    /// [`Self::new`] with each image's own token count (AnyRes: the rows its packing gives), the
    /// images laid out one after the other in the feature table.
    pub fn with_image_tokens(
        samples: &[SpliceInput<'_>],
        image_tokens: &[usize],
        max_len: usize,
        pad_id: i64,
    ) -> Result<Self, ModelError> {
        let num_images = image_tokens.len();
        let image_offsets: Vec<usize> = image_tokens
            .iter()
            .scan(0, |at, &n| {
                let start = *at;
                *at += n;
                Some(start)
            })
            .collect();
        let total_image_tokens: usize = image_tokens.iter().sum();
        if samples.is_empty() {
            return Err(ModelError::EmptyBatch);
        }
        let batch = samples.len();
        let text_len = samples.iter().map(|s| s.input_ids.len()).max().unwrap_or(0).max(1);
        let mut per_sample: Vec<Vec<Piece>> = Vec::with_capacity(batch);
        for (b, s) in samples.iter().enumerate() {
            if s.labels.len() != s.input_ids.len() {
                return Err(ModelError::LabelLength { sample: b, ids: s.input_ids.len(), labels: s.labels.len() });
            }
            let placeholders = s.input_ids.iter().filter(|&&t| t == IMAGE_TOKEN_INDEX).count();
            if placeholders != s.images.len() {
                return Err(ModelError::ImageCount { sample: b, placeholders, images: s.images.len() });
            }
            let mut pieces = Vec::new();
            let mut next_image = s.images.iter();
            for (j, (&id, &label)) in s.input_ids.iter().zip(s.labels).enumerate() {
                if pieces.len() >= max_len {
                    break;
                }
                if id == IMAGE_TOKEN_INDEX {
                    let &image = next_image.next().ok_or(ModelError::ImageCount { sample: b, placeholders, images: s.images.len() })?;
                    if image >= num_images {
                        return Err(ModelError::ImageIndex { sample: b, index: image, available: num_images });
                    }
                    pieces.extend((0..image_tokens[image]).map(|token| Piece::Image { image, token }));
                } else {
                    pieces.push(Piece::Text { row: b * text_len + j, label });
                }
            }
            pieces.truncate(max_len);
            per_sample.push(pieces);
        }
        let len = per_sample.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let zero_row = (batch * text_len + total_image_tokens) as i64;
        let mut plan = SplicePlan {
            batch,
            len,
            text_len,
            image_tokens: image_tokens.to_vec(),
            image_offsets,
            num_images,
            text_ids: vec![pad_id; batch * text_len],
            rows: vec![zero_row; batch * len],
            labels: vec![IGNORE_INDEX; batch * len],
            attention_mask: vec![false; batch * len],
            position_ids: vec![0; batch * len],
            lengths: per_sample.iter().map(Vec::len).collect(),
            image_spans: vec![Vec::new(); batch],
        };
        for (b, s) in samples.iter().enumerate() {
            for (j, &id) in s.input_ids.iter().enumerate() {
                if id != IMAGE_TOKEN_INDEX {
                    plan.text_ids[b * text_len + j] = id;
                }
            }
        }
        for (b, pieces) in per_sample.iter().enumerate() {
            for (p, piece) in pieces.iter().enumerate() {
                let at = b * len + p;
                plan.attention_mask[at] = true;
                plan.position_ids[at] = p as i64;
                match *piece {
                    Piece::Text { row, label } => {
                        plan.rows[at] = row as i64;
                        plan.labels[at] = label;
                    }
                    Piece::Image { image, token } => {
                        plan.rows[at] = (batch * text_len + plan.image_offsets[image] + token) as i64;
                        if token == 0 {
                            plan.image_spans[b].push(ImageSpan { start: p, len: 0 });
                        }
                        if let Some(span) = plan.image_spans[b].last_mut() {
                            span.len += 1;
                        }
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Label mask `[batch * len]`: true where a label is supervised.
    pub fn label_mask(&self) -> Vec<bool> {
        self.labels.iter().map(|&l| l != IGNORE_INDEX).collect()
    }
}

/// Builds the spliced input embeddings.
///
/// # Shapes
/// `text_embeds` `[batch, text_len, d]` (the embedding of `plan.text_ids`), `image_features`
/// `[num_images, image_tokens, d]` → `[batch, len, d]`, zeros on padding.
pub fn splice_embeddings<B: Backend>(
    plan: &SplicePlan,
    text_embeds: Tensor<B, 3>,
    image_features: Tensor<B, 3>,
) -> Result<Tensor<B, 3>, ModelError> {
    let [ni, nt, di] = image_features.dims();
    let d = text_embeds.dims()[2];
    if ni != plan.num_images || plan.image_tokens.iter().any(|&n| n != nt) || di != d {
        let expected = vec![plan.num_images, plan.image_tokens.first().copied().unwrap_or(0), d];
        return Err(ModelError::Shape { what: "image features", expected, found: vec![ni, nt, di] });
    }
    splice_rows(plan, text_embeds, image_features.reshape([ni * nt, di]))
}

/// [`splice_embeddings`] over a feature table of the images' rows one after the other (images
/// of different token counts, [`SplicePlan::with_image_tokens`]).
///
/// # Shapes
/// `text_embeds` `[batch, text_len, d]`, `image_rows` `[sum of image_tokens, d]` → `[batch, len, d]`
pub fn splice_rows<B: Backend>(
    plan: &SplicePlan,
    text_embeds: Tensor<B, 3>,
    image_rows: Tensor<B, 2>,
) -> Result<Tensor<B, 3>, ModelError> {
    let [tb, tl, d] = text_embeds.dims();
    if tb != plan.batch || tl != plan.text_len {
        return Err(ModelError::Shape { what: "text embeddings", expected: vec![plan.batch, plan.text_len, d], found: vec![tb, tl, d] });
    }
    let [nr, dr] = image_rows.dims();
    let total: usize = plan.image_tokens.iter().sum();
    if nr != total || dr != d {
        return Err(ModelError::Shape { what: "image feature rows", expected: vec![total, d], found: vec![nr, dr] });
    }
    let device = text_embeds.device();
    let dtype = text_embeds.dtype();
    let mut parts = vec![text_embeds.reshape([tb * tl, d])];
    if nr > 0 {
        parts.push(image_rows);
    }
    // The padding row in the embeddings' dtype: `cat` of a bf16 LLM's rows with a default-dtype
    // (f32) row panics on flex ("cat: dtype mismatch").
    parts.push(Tensor::<B, 2>::zeros([1, d], &device).cast(dtype));
    let table = Tensor::cat(parts, 0);
    let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(plan.rows.clone(), [plan.rows.len()]), &device);
    Ok(table.select(0, rows).reshape([plan.batch, plan.len, d]))
}

//! A Hugging Face `tokenizer.json` used the way LLaVA calls its tokenizer: `tokenizer(text)
//! .input_ids` (special tokens added: BOS for Llama), and `tokenizer_image_token`, which
//! tokenises the chunks around each `<image>` separately and puts -200 between them
//! (haotian-liu/LLaVA `llava/mm_utils.py` `tokenizer_image_token`).

use std::path::{Path, PathBuf};

use crate::DataError;

use super::prompt::IMAGE_TAG;

/// LLaVA's `IMAGE_TOKEN_INDEX`: the image placeholder in `input_ids`.
pub const IMAGE_TOKEN_INDEX: i64 = -200;
/// LLaVA's `IGNORE_INDEX`: an unsupervised label.
pub const IGNORE_INDEX: i64 = -100;

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    bos: Option<i64>,
    pad: i64,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("path", &self.path)
            .field("bos", &self.bos)
            .field("pad", &self.pad)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`. BOS is `<s>` when the vocabulary has it; the pad id is the unknown
    /// token's (LLaVA sets `pad_token = unk_token`), else 0.
    pub fn from_file(path: &Path) -> Result<Self, DataError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let bos = inner.token_to_id("<s>").map(i64::from);
        let pad = inner.token_to_id("<unk>").map_or(0, i64::from);
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            bos,
            pad,
        })
    }

    pub fn bos_id(&self) -> Option<i64> {
        self.bos
    }

    pub fn pad_id(&self) -> i64 {
        self.pad
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// `tokenizer(text).input_ids` (`add_special_tokens` as given).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<i64>, DataError> {
        let enc = self
            .inner
            .encode(text, add_special)
            .map_err(|e| DataError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// `tokenizer.decode(ids, skip_special_tokens)`: generated ids back to text.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, DataError> {
        self.inner.decode(ids, skip_special).map_err(|e| DataError::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// The id of `token` in the vocabulary (special tokens included), if it has one.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// `tokenizer_image_token(prompt)`: each chunk between `<image>` tags is tokenised on its own
    /// (with special tokens); if the first chunk starts with BOS, one BOS leads the result and
    /// each chunk's first token is dropped; the chunks are joined with -200.
    pub fn image_token(&self, prompt: &str) -> Result<Vec<i64>, DataError> {
        let chunks: Vec<Vec<i64>> = prompt
            .split(IMAGE_TAG)
            .map(|c| self.encode(c, true))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        let mut offset = 0;
        if let (Some(first), Some(bos)) = (chunks.first().and_then(|c| c.first()), self.bos) {
            if *first == bos {
                offset = 1;
                out.push(bos);
            }
        }
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 {
                // The separator is `[-200] * (offset + 1)` with its first `offset` entries dropped.
                out.push(IMAGE_TOKEN_INDEX);
            }
            out.extend_from_slice(chunk.get(offset..).unwrap_or(&[]));
        }
        Ok(out)
    }

    /// Tokenises chunk by chunk around `<image>` without special tokens (the ChatML path).
    pub fn image_token_plain(&self, text: &str) -> Result<Vec<i64>, DataError> {
        let mut out = Vec::new();
        for (i, chunk) in text.split(IMAGE_TAG).enumerate() {
            if i > 0 {
                out.push(IMAGE_TOKEN_INDEX);
            }
            out.extend(self.encode(chunk, false)?);
        }
        Ok(out)
    }
}

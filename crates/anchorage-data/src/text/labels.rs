//! Records to `input_ids` and `labels` exactly as LLaVA's `preprocess_plain` and `preprocess_v1`
//! return them (haotian-liu/LLaVA `llava/train/train.py`), followed by the collator's truncation
//! to the model's maximum length (`DataCollatorForSupervisedDataset`), plus a ChatML variant for
//! Qwen2 LLMs.

use crate::{DataError, FaultReason, SampleFault, Template};

use super::prompt::{normalize_image_tags, vicuna_v1_prompt, IMAGE_TAG};
use super::tokenizer::{TextTokenizer, IGNORE_INDEX};
use super::Record;

/// One tokenised sample, before image splicing: `input_ids` carries -200 where the image goes,
/// `labels` -100 where nothing is supervised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedSample {
    pub input_ids: Vec<i64>,
    pub labels: Vec<i64>,
    /// LLaVA's tokenization mismatch: every label was set to -100.
    pub mismatch: bool,
    /// Length before the truncation to `max_len`.
    pub full_len: usize,
}

impl TokenizedSample {
    pub fn image_count(&self) -> usize {
        self.input_ids.iter().filter(|&&i| i == super::IMAGE_TOKEN_INDEX).count()
    }
}

/// Why tokenising failed: a bad record (skipped and counted) or a tokenizer error.
#[derive(Debug)]
pub enum TokenizeError {
    Fault(SampleFault),
    Data(DataError),
}

impl From<DataError> for TokenizeError {
    fn from(e: DataError) -> Self {
        Self::Data(e)
    }
}

fn malformed(detail: impl Into<String>) -> TokenizeError {
    TokenizeError::Fault(SampleFault::new(FaultReason::Malformed, detail))
}

/// Template + tokenise + labels for one record, then truncate to `max_len` as the collator does.
/// `max_len` is also the tokenizer's `model_max_length`: text-only `vicuna_v1` prompts are
/// truncated by the tokenizer call and the mismatch rule applies only below it.
pub fn tokenize_record(
    record: &Record,
    template: Template,
    tok: &TextTokenizer,
    max_len: usize,
) -> Result<TokenizedSample, TokenizeError> {
    let mut turns = record.conversations.clone();
    if turns.is_empty() {
        return Err(malformed("no conversations"));
    }
    let has_image = record.has_image();
    if let Some(fault) = placeholder_fault(record) {
        return Err(TokenizeError::Fault(fault));
    }
    if has_image {
        normalize_image_tags(&mut turns);
    }
    let mut s = match template {
        Template::Plain => plain(&turns, tok)?,
        Template::VicunaV1 => vicuna_v1(&turns, has_image, tok, max_len)?,
        Template::Chatml => chatml(&turns, tok)?,
    };
    s.full_len = s.input_ids.len();
    s.input_ids.truncate(max_len);
    s.labels.truncate(max_len);
    Ok(s)
}

/// A record with an image whose turns would give more than one `<image>` placeholder after
/// LLaVA's normalisation (each turn that mentions `<image>` gets one): LLaVA has one image per
/// sample and fails on the second placeholder, so such a record is skipped as malformed.
/// (No placeholder at all is allowed: LLaVA then trains on the text and leaves the image unused.)
pub fn placeholder_fault(record: &Record) -> Option<SampleFault> {
    if !record.has_image() {
        return None;
    }
    let turns = record.conversations.iter().filter(|t| t.value.contains(IMAGE_TAG)).count();
    (turns > 1).then(|| {
        SampleFault::new(
            FaultReason::Malformed,
            format!("{turns} turns mention <image>, so the sample would have {turns} image placeholders for its one image"),
        )
    })
}

/// The structural rules alone (no tokenizer): conversations present; for `plain` exactly two
/// turns with `<image>` in the first; otherwise known roles alternating from `human` after an
/// optional leading `gpt` turn.
pub fn validate_structure(record: &Record, template: Template) -> Result<(), SampleFault> {
    let as_fault = |e: TokenizeError| match e {
        TokenizeError::Fault(f) => f,
        TokenizeError::Data(d) => SampleFault::new(FaultReason::Malformed, d.to_string()),
    };
    let turns = &record.conversations;
    if turns.is_empty() {
        return Err(as_fault(malformed("no conversations")));
    }
    if let Some(fault) = placeholder_fault(record) {
        return Err(fault);
    }
    match template {
        Template::Plain => {
            if turns.len() != 2 {
                return Err(as_fault(malformed(format!("plain needs exactly 2 turns, found {}", turns.len()))));
            }
            if !turns[0].value.contains(IMAGE_TAG) {
                return Err(as_fault(malformed("plain: the first turn has no <image>")));
            }
            Ok(())
        }
        Template::VicunaV1 | Template::Chatml => alternating(turns).map(|_| ()).map_err(as_fault),
    }
}

/// `preprocess_plain`: exactly two turns, `<image>` in the first; the prompt is `"<image>" +
/// answer + "\n"` and the `tokenizer_image_token("<image>")` prefix (BOS, -200) is masked.
fn plain(turns: &[super::Turn], tok: &TextTokenizer) -> Result<TokenizedSample, TokenizeError> {
    if turns.len() != 2 {
        return Err(malformed(format!("plain needs exactly 2 turns, found {}", turns.len())));
    }
    if !turns[0].value.contains(IMAGE_TAG) {
        return Err(malformed("plain: the first turn has no <image>"));
    }
    let text = format!("{IMAGE_TAG}{}\n", turns[1].value);
    let input_ids = tok.image_token(&text)?;
    let prefix = tok.image_token(IMAGE_TAG)?.len();
    let mut labels = input_ids.clone();
    let n = prefix.min(labels.len());
    labels[..n].fill(IGNORE_INDEX);
    Ok(TokenizedSample {
        input_ids,
        labels,
        mismatch: false,
        full_len: 0,
    })
}

const USER: &str = "USER";
const ASSISTANT: &str = "ASSISTANT";

fn role(from: &str) -> Result<&'static str, TokenizeError> {
    match from {
        "human" => Ok(USER),
        "gpt" => Ok(ASSISTANT),
        other => Err(malformed(format!("unknown role {other:?}"))),
    }
}

/// Drops a leading `gpt` turn and checks that roles alternate `human`, `gpt`, ...
fn alternating(turns: &[super::Turn]) -> Result<Vec<(&'static str, &str)>, TokenizeError> {
    let mut start = 0;
    if role(&turns[0].from)? != USER {
        start = 1;
    }
    let mut out = Vec::with_capacity(turns.len());
    for (j, t) in turns[start..].iter().enumerate() {
        let r = role(&t.from)?;
        let want = if j % 2 == 0 { USER } else { ASSISTANT };
        if r != want {
            return Err(malformed(format!("turn {} is {r}, expected {want} (roles out of order)", j + start)));
        }
        out.push((r, t.value.as_str()));
    }
    Ok(out)
}

/// Python's `target[start:stop] = IGNORE` with Python's slice bounds.
fn py_fill(v: &mut [i64], start: i64, stop: i64) {
    let len = v.len() as i64;
    let norm = |x: i64| if x < 0 { (x + len).max(0) } else { x.min(len) };
    let (a, b) = (norm(start), norm(stop));
    if a < b {
        v[a as usize..b as usize].fill(IGNORE_INDEX);
    }
}

/// `preprocess_v1` with a `legacy=false` tokenizer and tokenizers >= 0.14 (the round-length
/// correction applies from the second round on).
fn vicuna_v1(
    turns: &[super::Turn],
    has_image: bool,
    tok: &TextTokenizer,
    max_len: usize,
) -> Result<TokenizedSample, TokenizeError> {
    let messages = alternating(turns)?;
    let prompt = vicuna_v1_prompt(&messages);
    let tokens = |text: &str| -> Result<Vec<i64>, DataError> {
        if has_image {
            tok.image_token(text)
        } else {
            tok.encode(text, true)
        }
    };
    let mut input_ids = tokens(&prompt)?;
    if !has_image {
        // `tokenizer(prompt, truncation=True, max_length=model_max_length)`.
        input_ids.truncate(max_len);
    }
    let mut labels = input_ids.clone();
    let total_len = input_ids.iter().filter(|&&i| i != tok.pad_id()).count() as i64;
    let sep = format!(" {ASSISTANT}: ");
    let mut cur: i64 = 1;
    py_fill(&mut labels, 0, cur);
    for (i, rou) in prompt.split("</s>").enumerate() {
        if rou.is_empty() {
            break;
        }
        let parts: Vec<&str> = rou.split(sep.as_str()).collect();
        if parts.len() != 2 {
            break;
        }
        let instruction = format!("{}{sep}", parts[0]);
        let mut round_len = tokens(rou)?.len() as i64;
        let mut instruction_len = tokens(&instruction)?.len() as i64 - 2;
        if i != 0 {
            round_len -= 1;
            instruction_len -= 1;
        }
        py_fill(&mut labels, cur, cur + instruction_len);
        cur += round_len;
    }
    let len = labels.len() as i64;
    py_fill(&mut labels, cur, len.max(cur));
    let mut mismatch = false;
    if cur < max_len as i64 && cur != total_len {
        labels.fill(IGNORE_INDEX);
        mismatch = true;
        tracing::debug!(cur, total_len, "tokenization mismatch (all labels ignored)");
    }
    Ok(TokenizedSample {
        input_ids,
        labels,
        mismatch,
        full_len: 0,
    })
}

pub(crate) const CHATML_SYSTEM: &str = "You are a helpful assistant.";

/// ChatML for Qwen2 (no BOS): `<|im_start|>system\n…<|im_end|>\n`, then per turn
/// `<|im_start|>user\n…<|im_end|>\n` or `<|im_start|>assistant\n…<|im_end|>\n`. Built segment by
/// segment; only each answer and its `<|im_end|>` are supervised.
fn chatml(turns: &[super::Turn], tok: &TextTokenizer) -> Result<TokenizedSample, TokenizeError> {
    let messages = alternating(turns)?;
    let mut input_ids = Vec::new();
    let mut labels = Vec::new();
    let mut push = |ids: Vec<i64>, supervised: bool| {
        labels.extend(ids.iter().map(|&i| if supervised { i } else { IGNORE_INDEX }));
        input_ids.extend(ids);
    };
    push(tok.image_token_plain(&format!("<|im_start|>system\n{CHATML_SYSTEM}<|im_end|>\n"))?, false);
    for (r, value) in messages {
        if r == USER {
            push(tok.image_token_plain(&format!("<|im_start|>user\n{value}<|im_end|>\n"))?, false);
        } else {
            push(tok.image_token_plain("<|im_start|>assistant\n")?, false);
            push(tok.image_token_plain(&format!("{value}<|im_end|>"))?, true);
            push(tok.image_token_plain("\n")?, false);
        }
    }
    Ok(TokenizedSample {
        input_ids,
        labels,
        mismatch: false,
        full_len: 0,
    })
}

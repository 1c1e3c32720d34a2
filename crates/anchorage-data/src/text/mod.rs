//! Records, conversation templates, tokenisation around `<image>`, labels, and evaluation prompts.

mod labels;
mod prompt;
mod question;
mod record;
mod stream;
mod tokenizer;

pub use labels::{tokenize_record, validate_structure, TokenizeError, TokenizedSample};
pub use prompt::{normalize_image_tags, py_strip, vicuna_v1_prompt, IMAGE_TAG, VICUNA_SYSTEM};
pub use question::{question_ids, question_prompt};
pub use record::{Record, Turn};
pub use stream::{for_each_record, read_records, RecordResult};
pub use tokenizer::{TextTokenizer, IGNORE_INDEX, IMAGE_TOKEN_INDEX};

//! The demo world: procedural images of one shape (circle, rectangle, triangle) in one of eight
//! colours on a light background, written in LLaVA's layouts (558k-style captions, 665k-style
//! conversations, evaluation questions and answers, manifests) with a tokenizer trained on its
//! text. Everything is a pure function of the seed; nothing is downloaded. See `docs/demo.md`.

mod draw;
mod records;
#[cfg(test)]
mod tests;
mod text;
mod tokenizer;
mod world;
mod write;

pub use draw::{png_bytes, render, write_png};
pub use records::{any_question, caption_record, caption_sentence, conversation_record, conversation_record_with, YesNo, CONVERSATION_ROUNDS};
pub use text::{
    answer_for, ask_colour, ask_presence, ask_presence_naming, ask_presence_negated, ask_shape, capitalise, caption, normalise_answer, Category, PresenceNames, Question,
    CAPTION_PROMPTS, SHORT_ANSWER_SUFFIX,
};
pub use tokenizer::{corpus, train_tokenizer, TokenizerOptions, TrainedTokenizer, TOKENIZER_VERSION};
pub use world::{place_name, Colour, Scene, Shape};
pub use write::{
    eval_questions, files, image_name, scene_at, write_world, EvalAnswer, EvalQuestion, SceneEntry, Split,
    SynthOptions, SynthSummary, QUESTIONS_PER_EVAL_IMAGE,
};

//! Evaluation for anchorage: answering LLaVA question files with a trained model through the same
//! composed model as training ([`run`]), and benchmark scorers that give exactly the numbers of the reference scripts
//! LLaVA-1.5's published results come from (TextVQA, POPE, ScienceQA, GQA, SEED-Bench, MME, VQAv2).
//!
//! The scorers read LLaVA answer files (one JSON object a line: `question_id`, `prompt`, `text`, ...)
//! and the benchmarks' own annotation files, and reproduce each reference script's behaviour,
//! including the quirks that move a score; where a quirk does, a `tracing` warning names it, and
//! where the reference crashes the scorer returns an [`EvalError`] naming the file and the id.
//!
//! [`compare`] draws the table and plots that set runs side by side.

pub mod compare;
mod error;
pub mod run;
pub mod score;
pub mod suite;

pub use error::EvalError;

//! Scoring LLaVA answer files the way LLaVA-1.5's reference scripts do, one module per benchmark.
//! Shared pieces: [`answers`] reads the files, [`normalize`] is the EvalAI answer processor, and
//! `pytext` / `pykey` / `pyjson` hold the Python behaviours (string splitting, dict keys typed as
//! JSON typed them, `json.dumps`) that the reference numbers depend on.

pub mod answers;
mod exact;
mod gqa;
mod mme;
pub mod normalize;
mod pope;
pub(crate) mod pyjson;
mod pykey;
mod pytext;
mod request;
mod seed;
mod sqa;
mod textvqa;
mod vqav2;

pub use exact::{normalise as normalise_exact, score_exact, ExactScore};
pub use gqa::{score_gqa, GqaScore};
pub use mme::{score_mme, MmeScore};
pub use pope::{score_pope, PopeCategory, PopeScore};
pub use request::{score, Bench, Score};
pub use seed::{score_seed, SeedScore};
pub use sqa::{score_sqa, SqaScore};
pub use textvqa::{score_textvqa, TextVqaScore};
pub use vqav2::{score_vqav2, Vqav2Score};

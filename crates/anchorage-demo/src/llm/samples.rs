//! The demo LLM's training samples: LLaVA records of the world tokenised and labelled as training
//! will tokenise them, presence drills and evaluation-style questions, each with a description of
//! its scene (a caption or a word grid) where the image goes.

use anchorage_data::synth::{
    ask_colour, ask_presence, ask_presence_naming, ask_shape, caption, caption_record, conversation_record, PresenceNames, Question, Scene, YesNo,
    SHORT_ANSWER_SUFFIX,
};
use anchorage_data::text::{tokenize_record, Record, TextTokenizer, TokenizeError, Turn, IGNORE_INDEX, IMAGE_TAG, IMAGE_TOKEN_INDEX};
use anchorage_data::{SplitMix64, Template};

use super::Draw;
use crate::vision::shape_covers;
use crate::DemoError;

/// True with probability `p`, from one draw of `rng` (in millionths).
fn chance(rng: &mut SplitMix64, p: f64) -> bool {
    (rng.below(1_000_000) as f64) < p * 1e6
}

/// One training sequence: ids and labels aligned (LLaVA's convention: the loss shifts them).
#[derive(Debug, Clone, PartialEq)]
pub struct LmSample {
    pub ids: Vec<i64>,
    /// `labels[i]` is `ids[i]` where supervised.
    pub supervised: Vec<bool>,
}

impl LmSample {
    /// How many tokens the loss counts (a first token has nothing before it to predict it).
    pub fn supervised_count(&self) -> usize {
        self.supervised.iter().skip(1).filter(|&&s| s).count()
    }
}

/// Replaces the image placeholder by `slot` (unsupervised).
fn splice(ids: &[i64], labels: &[i64], slot: &[i64]) -> LmSample {
    let mut out = LmSample {
        ids: Vec::with_capacity(ids.len() + slot.len()),
        supervised: Vec::with_capacity(ids.len() + slot.len()),
    };
    for (&id, &label) in ids.iter().zip(labels) {
        if id == IMAGE_TOKEN_INDEX {
            out.ids.extend_from_slice(slot);
            out.supervised.extend(std::iter::repeat_n(false, slot.len()));
        } else {
            out.ids.push(id);
            out.supervised.push(label != IGNORE_INDEX);
        }
    }
    out
}

fn tokenize_error(e: TokenizeError) -> DemoError {
    match e {
        TokenizeError::Data(d) => DemoError::Data(d),
        TokenizeError::Fault(f) => DemoError::Train(format!("a generated record was refused: {f:?}")),
    }
}

/// What stands where the image goes: a caption of the scene, or with probability `grid` a word
/// grid, one word per cell of a 4×4 or 8×8 grid over the image in reading order: `background`,
/// or on the cells the shape covers ([`shape_covers`]: at least a third of the cell) its colour
/// and its shape in turn. A caption is what stage 1 teaches a connector to make the LLM say; a
/// grid is what a connector that maps each patch on its own (the MLP's 64 tokens, the 16 of the
/// resampler and C-Abstractor) can most easily put there, since the vision tower's patch tokens
/// are trained to name exactly that. Scenes covering fewer than two cells get a caption.
pub(crate) fn describe(rng: &mut SplitMix64, scene: &Scene, grid: f64) -> String {
    if grid > 0.0 && chance(rng, grid) {
        let side = if rng.below(2) == 0 { 4 } else { 8 };
        let covered = shape_covers(scene, side);
        if covered.iter().filter(|&&c| c).count() >= 2 {
            let mut k = 0;
            let words: Vec<&str> = covered
                .iter()
                .map(|&on| {
                    if !on {
                        return "background";
                    }
                    k += 1;
                    if k % 2 == 1 {
                        scene.colour.name()
                    } else {
                        scene.shape.name()
                    }
                })
                .collect();
            return words.join(" ");
        }
    }
    caption(rng, scene)
}

/// A presence drill, `{caption}. {question}[\n{suffix}] ASSISTANT: {answer}</s>`, a yes or a no
/// with equal odds, the short-answer suffix half the time, the answer and the end supervised (as
/// `vicuna_v1` supervises an answer). The caption is one of the world's (2 to 10 words), so the
/// words to compare sit at varying distances from the question, as in the full prompt: with a
/// fixed two-word caption (`red circle.`, until 2026-12-02) the drills could be answered by
/// position alone, and that did not carry over to the full prompt.
fn drill_sample(
    tok: &TextTokenizer,
    rng: &mut SplitMix64,
    scene: &Scene,
    negation: bool,
    colour_drills: f64,
    grid: f64,
) -> Result<LmSample, DemoError> {
    let yes = rng.below(2) == 0;
    let negated = negation && rng.below(3) == 0;
    let names = if chance(rng, colour_drills) {
        PresenceNames::Colour
    } else if rng.below(2) == 0 {
        PresenceNames::Shape
    } else {
        PresenceNames::Both
    };
    let q = ask_presence_naming(rng, scene, yes, negated, names);
    let described = describe(rng, scene, grid);
    let suffix = if rng.below(2) == 0 { format!("\n{SHORT_ANSWER_SUFFIX}") } else { String::new() };
    let prefix = format!("{described}. {}{suffix} ASSISTANT:", q.text);
    let head = tok.encode(&prefix, true)?;
    let ids = tok.encode(&format!("{prefix} {}</s>", q.answer), true)?;
    if ids.len() <= head.len() || ids[..head.len()] != head[..] {
        return Err(DemoError::Train(format!(
            "the drill {prefix:?} does not tokenise as a prefix of itself with its answer"
        )));
    }
    let supervised = (0..ids.len()).map(|i| i >= head.len()).collect();
    Ok(LmSample { ids, supervised })
}

/// Sample `index` of stream `stream` as `draw` says: a presence drill, or a corpus record (a third
/// caption records (`plain`), two thirds conversations (`vicuna_v1`), with a caption of the scene
/// in the image's place).
pub fn lm_sample(
    tok: &TextTokenizer,
    seed: u64,
    stream: u64,
    index: u64,
    max_len: usize,
    draw: Draw,
    grid: f64,
) -> Result<LmSample, DemoError> {
    let mut rng = SplitMix64::for_epoch(seed, stream, index);
    let scene = Scene::sample(&mut rng, 64);
    let drill = match draw {
        Draw::Drill { negation, colour } => Some((negation, colour)),
        Draw::Mixed { share, questions, colour } => {
            let r = rng.below(1_000_000) as f64;
            if r >= share * 1e6 && r < (share + questions) * 1e6 {
                return Ok(question_sample(tok, seed, stream, index, max_len, grid)?.1);
            }
            (r < share * 1e6).then_some((true, colour))
        }
        Draw::Corpus => None,
    };
    if let Some((negation, colour)) = drill {
        return drill_sample(tok, &mut rng, &scene, negation, colour, grid);
    }
    let mut yes_no = YesNo::default();
    if rng.below(2) == 0 {
        yes_no.next();
    }
    let (record, template) = if rng.below(3) == 0 {
        (
            caption_record(&mut rng, index.to_string(), String::new(), &scene),
            Template::Plain,
        )
    } else {
        (
            conversation_record(&mut rng, index.to_string(), String::new(), &scene, &mut yes_no),
            Template::VicunaV1,
        )
    };
    let tokens = tokenize_record(&record, template, tok, max_len).map_err(tokenize_error)?;
    let slot = tok.encode(&describe(&mut rng, &scene, grid), false)?;
    let mut s = splice(&tokens.input_ids, &tokens.labels, &slot);
    s.ids.truncate(max_len);
    s.supervised.truncate(max_len);
    Ok(s)
}

/// An evaluation-style question (one round, `vicuna_v1`) about a fresh scene of stream `stream`,
/// with a description of the scene in the image's place ([`describe`]: a caption, or a word grid
/// with probability `grid`): question `index` asks the shape, the colour,
/// a "yes" presence question or a "no" one in turn, as the world's eval split does.
pub fn question_sample(
    tok: &TextTokenizer,
    seed: u64,
    stream: u64,
    index: u64,
    max_len: usize,
    grid: f64,
) -> Result<(Question, LmSample), DemoError> {
    let mut rng = SplitMix64::for_epoch(seed, stream, index);
    let scene = Scene::sample(&mut rng, 64);
    let q = match index % 4 {
        0 => ask_shape(&mut rng, &scene),
        1 => ask_colour(&mut rng, &scene),
        k => ask_presence(&mut rng, &scene, k == 2),
    };
    one_round_sample(tok, &mut rng, &scene, q, max_len, grid)
}

/// A presence question about a fresh scene of stream `stream` naming what `names` says, answered
/// "yes" for even `index`, negated a third of the time, in one round of the full `vicuna_v1`
/// prompt with a description of the scene in the image's place (for the LLM's per-kind accuracy).
pub fn presence_sample(
    tok: &TextTokenizer,
    seed: u64,
    stream: u64,
    index: u64,
    names: PresenceNames,
    max_len: usize,
    grid: f64,
) -> Result<(Question, LmSample), DemoError> {
    let mut rng = SplitMix64::for_epoch(seed, stream, index);
    let scene = Scene::sample(&mut rng, 64);
    let negated = rng.below(3) == 0;
    let q = ask_presence_naming(&mut rng, &scene, index % 2 == 0, negated, names);
    one_round_sample(tok, &mut rng, &scene, q, max_len, grid)
}

/// `q` asked in one round of the full `vicuna_v1` prompt with a description of `scene` where the
/// image goes.
fn one_round_sample(
    tok: &TextTokenizer,
    rng: &mut SplitMix64,
    scene: &Scene,
    q: Question,
    max_len: usize,
    grid: f64,
) -> Result<(Question, LmSample), DemoError> {
    let turn = |from: &str, value: String| Turn {
        from: from.into(),
        value,
    };
    let record = Record {
        id: String::new(),
        image: Some(String::new()),
        conversations: vec![
            turn("human", format!("{IMAGE_TAG}\n{}", q.prompt())),
            turn("gpt", q.answer.clone()),
        ],
    };
    let tokens = tokenize_record(&record, Template::VicunaV1, tok, max_len).map_err(tokenize_error)?;
    let slot = tok.encode(&describe(rng, scene, grid), false)?;
    Ok((q, splice(&tokens.input_ids, &tokens.labels, &slot)))
}

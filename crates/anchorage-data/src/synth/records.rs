//! LLaVA records about scenes: 558k-style caption records (`plain` template) and 665k-style
//! multi-turn conversations of short-answer questions (`vicuna_v1`).

use super::text::{ask_colour, ask_presence, ask_shape, caption, Question, CAPTION_PROMPTS};
use super::world::{pick, Scene};
use crate::text::{Record, Turn, IMAGE_TAG};
use crate::SplitMix64;

/// Alternates the answers of presence questions so that yes and no are balanced exactly (up to
/// one) over any prefix of the questions drawn from it.
#[derive(Debug, Clone, Default)]
pub struct YesNo {
    drawn: u64,
}

impl YesNo {
    /// `true` ("yes") for even draws, `false` for odd ones.
    pub fn next(&mut self) -> bool {
        self.drawn += 1;
        self.drawn % 2 == 1
    }
}

fn turn(from: &str, value: String) -> Turn {
    Turn {
        from: from.to_string(),
        value,
    }
}

/// A caption record as in `blip_laion_cc_sbu_558k.json`: `<image>\n` + a brief-description
/// instruction, answered by the caption.
pub fn caption_record(rng: &mut SplitMix64, id: String, image: String, scene: &Scene) -> Record {
    let prompt = pick(rng, CAPTION_PROMPTS);
    Record {
        id,
        image: Some(image),
        conversations: vec![
            turn("human", format!("{IMAGE_TAG}\n{prompt}")),
            turn("gpt", caption(rng, scene)),
        ],
    }
}

/// One random short-answer question (shape, colour or presence, presence twice as often).
pub fn any_question(rng: &mut SplitMix64, scene: &Scene, yes_no: &mut YesNo) -> Question {
    match rng.below(4) {
        0 => ask_shape(rng, scene),
        1 => ask_colour(rng, scene),
        _ => ask_presence(rng, scene, yes_no.next()),
    }
}

/// A caption as a sentence: capitalised, with a final period.
pub fn caption_sentence(rng: &mut SplitMix64, scene: &Scene) -> String {
    let c = caption(rng, scene);
    let mut chars = c.chars();
    let first: String = chars.next().map(|f| f.to_uppercase().collect()).unwrap_or_default();
    format!("{first}{}.", chars.as_str())
}

/// Rounds of a [`conversation_record`]: 2 to 4.
pub const CONVERSATION_ROUNDS: (usize, usize) = (2, 4);

/// A conversation record as in `llava_v1_5_mix665k.json`: 2 to 4 rounds of short-answer questions
/// (now and then a brief description instead), the first human turn starting with `<image>\n`.
pub fn conversation_record(
    rng: &mut SplitMix64,
    id: String,
    image: String,
    scene: &Scene,
    yes_no: &mut YesNo,
) -> Record {
    conversation_record_with(rng, id, image, scene, yes_no, CONVERSATION_ROUNDS)
}

/// [`conversation_record`] with `rounds.0` to `rounds.1` rounds (drawn uniformly; `rounds.0 >= 1`
/// and `rounds.0 <= rounds.1`, else clamped so).
pub fn conversation_record_with(
    rng: &mut SplitMix64,
    id: String,
    image: String,
    scene: &Scene,
    yes_no: &mut YesNo,
    rounds: (usize, usize),
) -> Record {
    let low = rounds.0.max(1);
    let high = rounds.1.max(low);
    let rounds = low + rng.below((high - low + 1) as u64) as usize;
    let mut conversations = Vec::with_capacity(2 * rounds);
    for r in 0..rounds {
        let (human, gpt) = if rng.below(6) == 0 {
            (pick(rng, CAPTION_PROMPTS).to_string(), caption_sentence(rng, scene))
        } else {
            let q = any_question(rng, scene, yes_no);
            (q.prompt(), q.answer)
        };
        let human = if r == 0 { format!("{IMAGE_TAG}\n{human}") } else { human };
        conversations.push(turn("human", human));
        conversations.push(turn("gpt", gpt));
    }
    Record {
        id,
        image: Some(image),
        conversations,
    }
}

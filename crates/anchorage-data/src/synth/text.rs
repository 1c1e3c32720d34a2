//! What the world says about a scene: captions (LLaVA-558k style), short-answer questions with
//! their one-word answers (LLaVA-665k's VQA style), in many phrasings and capitalisations.

use serde::{Deserialize, Serialize};

use super::world::{pick, Colour, Scene, Shape};
use crate::SplitMix64;

/// The suffix LLaVA-665k's VQA parts and LLaVA's evaluation prompts put after a short-answer question.
pub const SHORT_ANSWER_SUFFIX: &str = "Answer the question using a single word or phrase.";

/// LLaVA's brief-description instructions (the 558k set's human turns, after `<image>\n`).
pub const CAPTION_PROMPTS: &[&str] = &[
    "Describe the image concisely.",
    "Provide a brief description of the given image.",
    "Offer a succinct explanation of the picture presented.",
    "Summarize the visual content of the image.",
    "Give a short and clear explanation of the subsequent image.",
    "Share a concise interpretation of the image provided.",
    "Present a compact description of the photo's key features.",
    "Relay a brief, clear account of the picture shown.",
    "Render a clear and concise summary of the photo.",
    "Write a terse but informative summary of the picture.",
    "Create a compact narrative representing the image presented.",
];

/// What a question asks about (the `category` of the evaluation file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// "What shape ...?" -> circle / rectangle / triangle.
    Shape,
    /// "What color ...?" -> one of the eight colours.
    Color,
    /// "Is there (not) a ...?" -> yes / no.
    Presence,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Shape => "shape",
            Category::Color => "color",
            Category::Presence => "presence",
        }
    }
}

/// A short-answer question about one scene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The question as asked, without the short-answer suffix.
    pub text: String,
    /// One lower-case word.
    pub answer: String,
    pub category: Category,
}

impl Question {
    /// The question followed by `"\n" + SHORT_ANSWER_SUFFIX`, as LLaVA prompts it.
    pub fn prompt(&self) -> String {
        format!("{}\n{SHORT_ANSWER_SUFFIX}", self.text)
    }
}

/// A caption naming the colour and shape (and often size and place).
pub fn caption(rng: &mut SplitMix64, scene: &Scene) -> String {
    let (c, s, p) = (scene.colour.name(), scene.shape.name(), scene.place());
    let sized = match scene.size_word() {
        "" => format!("{c} {s}"),
        w => format!("{w} {c} {s}"),
    };
    match rng.below(4) {
        0 => format!("a {sized} {p}"),
        1 => format!("a {c} {s} on a light background"),
        2 => format!("a {sized} {p} on a plain background"),
        _ => format!("a {c} {s}"),
    }
}

/// Capitalises a question: sentence case most often, else all lower, ALL UPPER or Title Case.
pub fn capitalise(rng: &mut SplitMix64, text: &str) -> String {
    match rng.below(20) {
        0..=11 => {
            let mut chars = text.chars();
            chars
                .next()
                .map(|f| f.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
        12..=14 => text.to_lowercase(),
        15..=17 => text.to_uppercase(),
        _ => text
            .split(' ')
            .map(|w| {
                let mut chars = w.chars();
                chars
                    .next()
                    .map(|f| f.to_uppercase().chain(chars).collect::<String>())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn spelling(rng: &mut SplitMix64) -> &'static str {
    if rng.below(4) == 0 {
        "colour"
    } else {
        "color"
    }
}

/// "What shape ...?": answered by the scene's shape.
pub fn ask_shape(rng: &mut SplitMix64, scene: &Scene) -> Question {
    let c = scene.colour.name();
    let text = match rng.below(5) {
        0 => "what shape is in the image?".to_string(),
        1 => "what shape is shown?".to_string(),
        2 => format!("what is the {c} shape?"),
        3 => "which shape is this?".to_string(),
        _ => "what kind of shape is in the picture?".to_string(),
    };
    Question {
        text: capitalise(rng, &text),
        answer: scene.shape.name().to_string(),
        category: Category::Shape,
    }
}

/// "What color ...?": answered by the scene's colour.
pub fn ask_colour(rng: &mut SplitMix64, scene: &Scene) -> Question {
    let s = scene.shape.name();
    let col = spelling(rng);
    let text = match rng.below(5) {
        0 => format!("what is the {col} of the {s}?"),
        1 => format!("what {col} is the {s}?"),
        2 => format!("what {col} is the shape?"),
        3 => format!("which {col} does the {s} have?"),
        _ => format!("what is the {col} of the shape in the image?"),
    };
    Question {
        text: capitalise(rng, &text),
        answer: scene.colour.name().to_string(),
        category: Category::Color,
    }
}

/// What a presence question names: a colour, a shape or both.
#[derive(Debug, Clone, Copy)]
enum Target {
    Colour(Colour),
    Shape(Shape),
    Both(Colour, Shape),
}

impl Target {
    fn phrase(self) -> String {
        match self {
            Target::Colour(c) => format!("{} shape", c.name()),
            Target::Shape(s) => s.name().to_string(),
            Target::Both(c, s) => format!("{} {}", c.name(), s.name()),
        }
    }
}

fn other<T: Copy + PartialEq>(rng: &mut SplitMix64, all: &[T], not: T) -> T {
    let rest: Vec<T> = all.iter().copied().filter(|&x| x != not).collect();
    pick(rng, &rest)
}

/// "Is there (not) a ...?" with the given answer. Negated phrasings ("is there not a blue shape
/// in the image?", "is no teal shape present?") are answered "yes" exactly when the named shape
/// is absent.
pub fn ask_presence(rng: &mut SplitMix64, scene: &Scene, answer_yes: bool) -> Question {
    let negated = rng.below(3) == 0;
    ask_presence_negated(rng, scene, answer_yes, negated)
}

/// [`ask_presence`] with the negation chosen by the caller (the demo LLM's curriculum first
/// drills presence questions without negation).
pub fn ask_presence_negated(rng: &mut SplitMix64, scene: &Scene, answer_yes: bool, negated: bool) -> Question {
    let names = match rng.below(3) {
        0 => PresenceNames::Colour,
        1 => PresenceNames::Shape,
        _ => PresenceNames::Both,
    };
    ask_presence_naming(rng, scene, answer_yes, negated, names)
}

/// What a presence question names: `is there a red shape?` (a colour), `is there a circle?` (a
/// shape) or `is there a red circle?` (both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceNames {
    Colour,
    Shape,
    Both,
}

/// [`ask_presence_negated`] naming what the caller chooses (the demo LLM's drills choose with
/// their `colour_drills` share).
pub fn ask_presence_naming(rng: &mut SplitMix64, scene: &Scene, answer_yes: bool, negated: bool, names: PresenceNames) -> Question {
    let present = answer_yes != negated;
    let target = match names {
        PresenceNames::Colour => Target::Colour(if present {
            scene.colour
        } else {
            other(rng, &Colour::ALL, scene.colour)
        }),
        PresenceNames::Shape => Target::Shape(if present {
            scene.shape
        } else {
            other(rng, &Shape::ALL, scene.shape)
        }),
        PresenceNames::Both => {
            let (mut c, mut s) = (scene.colour, scene.shape);
            if !present {
                match rng.below(3) {
                    0 => c = other(rng, &Colour::ALL, c),
                    1 => s = other(rng, &Shape::ALL, s),
                    _ => {
                        c = other(rng, &Colour::ALL, c);
                        s = other(rng, &Shape::ALL, s);
                    }
                }
            }
            Target::Both(c, s)
        }
    };
    let x = target.phrase();
    let text = if negated {
        match rng.below(6) {
            0 => format!("is there not a {x}?"),
            1 => format!("is there not a {x} in the image?"),
            2 => format!("does the image not contain a {x}?"),
            3 => format!("is no {x} present?"),
            4 => format!("is there no {x} in the image?"),
            _ => format!("does this picture not show a {x}?"),
        }
    } else {
        match rng.below(6) {
            0 => format!("is there a {x}?"),
            1 => format!("is there a {x} in the image?"),
            2 => format!("does the image contain a {x}?"),
            3 => format!("is a {x} present?"),
            4 => format!("can you see a {x}?"),
            _ => format!("does this picture show a {x}?"),
        }
    };
    Question {
        text: capitalise(rng, &text),
        answer: if answer_yes { "yes" } else { "no" }.to_string(),
        category: Category::Presence,
    }
}

/// The answer a question has for a scene, worked out from its words alone (the test oracle for
/// the generator, and documentation of the phrasings' meaning). `None` if it is not a question
/// of this world.
pub fn answer_for(scene: &Scene, question: &str) -> Option<String> {
    let q = question.to_lowercase();
    let q = q.trim_end_matches('?');
    let words: Vec<&str> = q.split(' ').collect();
    let colour = Colour::ALL.into_iter().find(|c| words.contains(&c.name()));
    let shape = Shape::ALL.into_iter().find(|s| words.contains(&s.name()));
    if words.first() == Some(&"what") || words.first() == Some(&"which") {
        if words.contains(&"color") || words.contains(&"colour") {
            return Some(scene.colour.name().to_string());
        }
        return Some(scene.shape.name().to_string());
    }
    let negated = words.contains(&"not") || words.contains(&"no");
    let present = colour.is_none_or(|c| c == scene.colour) && shape.is_none_or(|s| s == scene.shape);
    if colour.is_none() && shape.is_none() {
        return None;
    }
    Some(if present != negated { "yes" } else { "no" }.to_string())
}

/// Scores an answer as LLaVA's short-answer evaluation does here: exact match after lower-casing,
/// trimming and stripping one final period.
pub fn normalise_answer(answer: &str) -> String {
    let a = answer.trim().to_lowercase();
    a.strip_suffix('.').unwrap_or(&a).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_question_has_the_oracle_answer() {
        let mut rng = SplitMix64::new(11);
        for i in 0..3000 {
            let scene = Scene::sample(&mut rng, 64);
            for q in [
                ask_shape(&mut rng, &scene),
                ask_colour(&mut rng, &scene),
                ask_presence(&mut rng, &scene, i % 2 == 0),
            ] {
                assert_eq!(
                    answer_for(&scene, &q.text).as_deref(),
                    Some(q.answer.as_str()),
                    "{q:?} {scene:?}"
                );
            }
        }
    }

    #[test]
    fn named_phrasings_mean_what_they_say() {
        let mut rng = SplitMix64::new(1);
        let scene = Scene::sample_with(&mut rng, Shape::Triangle, Colour::Green, 64);
        for (q, a) in [
            ("is there a red shape?", "no"),
            ("does the image contain a triangle?", "yes"),
            ("is there not a blue shape in the image?", "yes"),
            ("does the image not contain a green shape?", "no"),
            ("is no teal shape present?", "yes"),
            ("what is the color of the triangle?", "green"),
            ("WHAT IS THE GREEN SHAPE?", "triangle"),
        ] {
            assert_eq!(answer_for(&scene, q).as_deref(), Some(a), "{q}");
        }
        assert_eq!(normalise_answer(" Yes. "), "yes");
    }
}

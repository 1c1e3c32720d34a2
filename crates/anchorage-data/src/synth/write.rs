//! Writing the world to disk in LLaVA's layouts: PNG images, a 558k-style caption set, a
//! 665k-style conversation set, evaluation questions and answers as LLaVA's evaluation scripts
//! read them, data-set manifests, the scenes, and a tokenizer trained on the world's text.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::draw::write_png;
use super::records::{caption_record, conversation_record_with, YesNo, CONVERSATION_ROUNDS};
use super::text::{ask_colour, ask_presence, ask_shape};
use super::tokenizer::{train_tokenizer, TokenizerOptions};
use super::world::Scene;
use crate::{Aspect, DataError, Manifest, SplitMix64, Template};

/// What `train data synth` generates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthOptions {
    /// Training images; each gets one caption record and one conversation record.
    pub train: usize,
    /// Evaluation images; each gets [`QUESTIONS_PER_EVAL_IMAGE`] questions.
    pub eval: usize,
    pub seed: u64,
    /// Image side in pixels.
    pub size: u32,
    /// Rounds of each conversation record, fewest and most (LLaVA-665k's VQA records group many
    /// questions about one image; more rounds give stage 2 more answers per image).
    pub rounds: (usize, usize),
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            train: 2000,
            eval: 100,
            seed: 0,
            size: 64,
            rounds: CONVERSATION_ROUNDS,
        }
    }
}

/// Shape, colour and two presence questions (one "yes", one "no").
pub const QUESTIONS_PER_EVAL_IMAGE: usize = 4;

/// File names inside the output folder.
pub mod files {
    pub const PRETRAIN: &str = "pretrain.json";
    pub const IFT: &str = "ift.json";
    pub const PRETRAIN_MANIFEST: &str = "pretrain.toml";
    pub const IFT_MANIFEST: &str = "ift.toml";
    pub const QUESTIONS: &str = "eval/questions.jsonl";
    pub const ANSWERS: &str = "eval/answers.jsonl";
    pub const SCENES: &str = "scenes.jsonl";
    pub const TOKENIZER: &str = "tokenizer.json";
    pub const OPTIONS: &str = "world.json";
    pub const IMAGES: &str = "images";
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    pub dir: PathBuf,
    pub train_images: usize,
    pub eval_images: usize,
    pub questions: usize,
    pub yes: usize,
    pub no: usize,
    pub tokenizer_vocab: usize,
}

/// One evaluation question as LLaVA's `model_vqa_loader.py` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EvalQuestion {
    pub question_id: u64,
    pub image: String,
    pub text: String,
    #[serde(default)]
    pub category: Option<String>,
}

/// The ground truth of one question.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EvalAnswer {
    pub question_id: u64,
    pub answer: String,
}

/// Where and what a scene is, for tests and for drawing anchors over images.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SceneEntry {
    pub image: String,
    #[serde(flatten)]
    pub scene: Scene,
}

/// Splits of the world; each draws its scenes from its own stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Eval,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Eval => "eval",
        }
    }

    fn stream(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::Eval => 2,
        }
    }
}

/// The scene of image `index` of a split: independent of how many images are generated.
pub fn scene_at(seed: u64, split: Split, index: usize, size: u32) -> Scene {
    let mut rng = SplitMix64::for_epoch(seed, split.stream(), index as u64);
    Scene::sample(&mut rng, size)
}

/// The image path of image `index` of a split, relative to the image root.
pub fn image_name(split: Split, index: usize) -> String {
    format!("{}/{index:06}.png", split.name())
}

fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), DataError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| DataError::json(path, &e))?;
    std::fs::write(path, text).map_err(|e| DataError::io(path, e))
}

fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), DataError> {
    let mut out = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut out, row).map_err(|e| DataError::json(path, &e))?;
        out.push(b'\n');
    }
    let mut file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    file.write_all(&out).map_err(|e| DataError::io(path, e))
}

fn create_dir(path: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(path).map_err(|e| DataError::io(path, e))
}

/// Writes the images of a split and returns their scenes.
fn write_images(dir: &Path, opts: &SynthOptions, split: Split, count: usize) -> Result<Vec<SceneEntry>, DataError> {
    use rayon::prelude::*;
    create_dir(&dir.join(files::IMAGES).join(split.name()))?;
    (0..count)
        .into_par_iter()
        .map(|i| {
            let scene = scene_at(opts.seed, split, i, opts.size);
            let image = image_name(split, i);
            write_png(&scene, &dir.join(files::IMAGES).join(&image))?;
            Ok(SceneEntry { image, scene })
        })
        .collect()
}

fn manifest(
    name: &str,
    description: &str,
    annotations: &str,
    samples: usize,
    template: Template,
    aspect: Aspect,
) -> Manifest {
    Manifest {
        name: name.to_string(),
        description: description.to_string(),
        annotations: annotations.into(),
        image_root: files::IMAGES.into(),
        image_folders: vec![Split::Train.name().to_string()],
        expected_samples: samples.max(1) as u64,
        template,
        aspect,
        root: Some(".".into()),
        source: None,
    }
}

fn write_manifest(path: &Path, m: &Manifest) -> Result<(), DataError> {
    let text = toml::to_string(m).map_err(|e| DataError::Manifest {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let header = "# Written by `train data synth` (the demo world): paths are relative to this folder.\n";
    std::fs::write(path, format!("{header}{text}")).map_err(|e| DataError::io(path, e))
}

/// Evaluation questions and answers for the eval scenes: per image a shape, a colour, a "yes" and
/// a "no" presence question, in a random order.
pub fn eval_questions(seed: u64, scenes: &[SceneEntry]) -> (Vec<EvalQuestion>, Vec<EvalAnswer>) {
    let mut questions = Vec::with_capacity(scenes.len() * QUESTIONS_PER_EVAL_IMAGE);
    let mut answers = Vec::with_capacity(questions.capacity());
    for (i, entry) in scenes.iter().enumerate() {
        let mut rng = SplitMix64::for_epoch(seed, 3, i as u64);
        let s = &entry.scene;
        let mut qs = vec![
            ask_shape(&mut rng, s),
            ask_colour(&mut rng, s),
            ask_presence(&mut rng, s, true),
            ask_presence(&mut rng, s, false),
        ];
        let order = rng.permutation(qs.len());
        let shuffled: Vec<_> = order.into_iter().map(|k| qs[k].clone()).collect();
        qs = shuffled;
        for q in qs {
            let question_id = questions.len() as u64;
            questions.push(EvalQuestion {
                question_id,
                image: entry.image.clone(),
                text: q.prompt(),
                category: Some(q.category.name().to_string()),
            });
            answers.push(EvalAnswer {
                question_id,
                answer: q.answer,
            });
        }
    }
    (questions, answers)
}

/// Writes the whole world into `dir` (created if absent; existing files are overwritten).
pub fn write_world(dir: &Path, opts: &SynthOptions) -> Result<SynthSummary, DataError> {
    create_dir(&dir.join("eval"))?;
    let train = write_images(dir, opts, Split::Train, opts.train)?;
    let eval = write_images(dir, opts, Split::Eval, opts.eval)?;

    let mut yes_no = YesNo::default();
    let mut captions = Vec::with_capacity(train.len());
    let mut conversations = Vec::with_capacity(train.len());
    for (i, entry) in train.iter().enumerate() {
        let mut rng = SplitMix64::for_epoch(opts.seed, 4, i as u64);
        let id = format!("{:06}", i);
        captions.push(caption_record(&mut rng, id.clone(), entry.image.clone(), &entry.scene));
        conversations.push(conversation_record_with(&mut rng, id, entry.image.clone(), &entry.scene, &mut yes_no, opts.rounds));
    }
    write_json(&dir.join(files::PRETRAIN), &captions)?;
    write_json(&dir.join(files::IFT), &conversations)?;

    let (questions, answers) = eval_questions(opts.seed, &eval);
    write_jsonl(&dir.join(files::QUESTIONS), &questions)?;
    write_jsonl(&dir.join(files::ANSWERS), &answers)?;
    let scenes: Vec<&SceneEntry> = train.iter().chain(&eval).collect();
    write_jsonl(&dir.join(files::SCENES), &scenes)?;

    write_manifest(
        &dir.join(files::PRETRAIN_MANIFEST),
        &manifest(
            "synth-pretrain",
            "demo world captions (LLaVA-558k style)",
            files::PRETRAIN,
            captions.len(),
            Template::Plain,
            Aspect::Square,
        ),
    )?;
    write_manifest(
        &dir.join(files::IFT_MANIFEST),
        &manifest(
            "synth-ift",
            "demo world conversations (LLaVA-665k style)",
            files::IFT,
            conversations.len(),
            Template::VicunaV1,
            Aspect::Pad,
        ),
    )?;

    let tokenizer = train_tokenizer(&TokenizerOptions::default())?;
    let tok_path = dir.join(files::TOKENIZER);
    std::fs::write(&tok_path, &tokenizer.json).map_err(|e| DataError::io(&tok_path, e))?;
    write_json(&dir.join(files::OPTIONS), opts)?;

    let yes = answers.iter().filter(|a| a.answer == "yes").count();
    let no = answers.iter().filter(|a| a.answer == "no").count();
    tracing::info!(dir = %dir.display(), train = train.len(), eval = eval.len(), questions = questions.len(), "wrote the demo world");
    Ok(SynthSummary {
        dir: dir.to_path_buf(),
        train_images: train.len(),
        eval_images: eval.len(),
        questions: questions.len(),
        yes,
        no,
        tokenizer_vocab: tokenizer.vocab_size,
    })
}

//! Answering a LLaVA question file with a trained model, as `llava/eval/model_vqa_loader.py` does:
//! each question's prompt is the conversation template with `<image>\n` before the text, its image
//! goes through the run's own preprocessing (pad for LLaVA-1.5), decoding is greedy, and each answer
//! is written as LLaVA writes it. Batches are right padded and every prompt keeps its own positions,
//! so a question's answer does not depend on its batch (tested against batch size 1). An
//! interrupted run continues where its answers file ends.

mod answers;
mod efficiency;
mod hf_folder;
mod questions;

pub use answers::{answer_line, AnswersFile};
pub use efficiency::{peak_memory_bytes, Efficiency};
pub use hf_folder::{hf_llava_for_generation, HfGenerationModel};
pub use questions::{read_questions, read_science_questions, Question};

use std::path::Path;

use anchorage_data::image::{decode_rgb, load_pixel_values};
use anchorage_data::text::{py_strip, question_ids, TextTokenizer};
use anchorage_data::{AnyResProcessor, AnyResViews, Aspect, ClipImageProcessor, PixelValues, Template};
use anchorage_model::{Llava, Prompt};
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};

use crate::EvalError;

/// A model ready to answer: the composed model and how its prompts and images are prepared.
pub struct EvalModel<B: Backend> {
    pub model: Llava<B>,
    pub tokenizer: TextTokenizer,
    pub template: Template,
    pub aspect: Aspect,
    pub processor: ClipImageProcessor,
    /// LLaVA-NeXT's tiling, for a model that packs AnyRes views (`aspect = anyres`: the run's
    /// `[vision] grid_pinpoints`, or a LLaVA-NeXT folder's processor); `None` otherwise.
    pub anyres: Option<AnyResProcessor>,
    /// What answers name as `model_id` (LLaVA: the model folder's name).
    pub model_id: String,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub batch_size: usize,
    /// LLaVA's evaluation scripts default to 128.
    pub max_new_tokens: usize,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { batch_size: 1, max_new_tokens: 128, progress: false }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub questions: usize,
    /// Answers already in the file when the run started.
    pub resumed: usize,
    pub answered: usize,
    pub efficiency: Efficiency,
}

impl<B: Backend> EvalModel<B> {
    /// Greedy answers to `prompts` (already prepared), decoded and stripped as LLaVA does
    /// (`batch_decode(..., skip_special_tokens=True)[0].strip()`), with what generating them cost.
    pub fn answer(&self, prompts: &[Prompt], max_new_tokens: usize) -> Result<(Vec<String>, anchorage_model::Generation), EvalError> {
        let stop = self.model.llm().config.eos_token_ids.clone();
        let generation = self.model.generate(prompts, max_new_tokens, &stop, self.tokenizer.pad_id())?;
        let mut texts = Vec::with_capacity(generation.tokens.len());
        for tokens in &generation.tokens {
            let end = tokens.iter().rposition(|t| !stop.contains(t)).map_or(0, |i| i + 1);
            texts.push(py_strip(&self.tokenizer.decode(&tokens[..end], true)?).to_string());
        }
        Ok((texts, generation))
    }

    /// The prompt of one question: its ids and, when it has one, its preprocessed image.
    pub fn prompt(&self, question: &str, image: Option<&Path>) -> Result<Prompt, EvalError> {
        let input_ids = question_ids(&self.tokenizer, self.template, question, image.is_some())?;
        let (pixels, anyres) = match image {
            Some(path) => {
                let (base, views) = self.load_image(path)?;
                (Some(base), views)
            }
            None => (None, None),
        };
        Ok(Prompt { input_ids, pixels, anyres })
    }

    /// One image as the model takes it: its (base) view, and for an AnyRes model its grid tiles,
    /// original size and grid, as training's data set prepares them.
    pub fn load_image(&self, path: &Path) -> Result<(PixelValues, Option<AnyResViews>), EvalError> {
        let processor = match (&self.anyres, self.aspect) {
            (Some(processor), Aspect::AnyRes) => processor,
            (None, Aspect::AnyRes) => {
                let message = "aspect anyres, but the model has no AnyRes processor (grid pinpoints) to tile its images".into();
                return Err(anchorage_model::ModelError::Spec { key: "data.aspect".into(), message }.into());
            }
            _ => return Ok((load_pixel_values(path, self.aspect, &self.processor)?, None)),
        };
        let views = processor.preprocess(&decode_rgb(path)?);
        let (rows, cols) = processor.grid_shape(views.image_size);
        let mut tiles = views.tiles.into_iter();
        let base = tiles.next().ok_or_else(|| anchorage_data::DataError::ImageDecode { path: path.to_path_buf(), message: "AnyRes made no views".into() })?;
        let image_size = (views.image_size.0 as usize, views.image_size.1 as usize);
        Ok((base, Some(AnyResViews { tiles: tiles.collect(), image_size, grid: (rows as usize, cols as usize) })))
    }
}

/// Answers every question of `questions` not yet in `answers`, appending to it.
pub fn answer_questions<B: Backend>(m: &EvalModel<B>, questions: &[Question], image_folder: &Path, answers: &Path, options: &RunOptions) -> Result<RunReport, EvalError> {
    let mut file = AnswersFile::open(answers)?;
    let resumed = questions.iter().filter(|q| file.is_done(q)).count();
    let todo: Vec<&Question> = questions.iter().filter(|q| !file.is_done(q)).collect();
    let bar = if options.progress { ProgressBar::new(questions.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} questions  {msg}  ETA {eta_precise}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_position(resumed as u64);
    let mut efficiency = Efficiency::default();
    for batch in todo.chunks(options.batch_size.max(1)) {
        let prompts = batch
            .iter()
            .map(|q| {
                let image = q.image.as_ref().map(|i| image_folder.join(i));
                m.prompt(&q.text, image.as_deref()).map_err(|e| EvalError::Question { id: q.key(), line: q.line, source: Box::new(e) })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (texts, generation) = m.answer(&prompts, options.max_new_tokens)?;
        for (q, text) in batch.iter().zip(&texts) {
            file.write(q, text, &m.model_id)?;
        }
        efficiency.add(&generation);
        bar.inc(batch.len() as u64);
        bar.set_message(format!("{:.1} tok/s", efficiency.decode_tokens_per_s()));
    }
    file.sync()?;
    bar.finish_and_clear();
    Ok(RunReport { questions: questions.len(), resumed, answered: todo.len(), efficiency })
}

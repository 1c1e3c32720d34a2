//! The training plan: the numbers a recipe implies (samples, steps, warmup, accumulation), derived
//! once and shared by `--dry-run`, `train inspect recipe` and the trainer.

use std::fmt;
use std::path::PathBuf;

use anchorage_data::{Aspect, Manifest, SampleCount, SampleCountSource, Template};
use serde::{Deserialize, Serialize};

use crate::{Recipe, TrainError};

/// Training stage; each has its own subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Stage 1: connector pretraining on caption data (`train pretrain`).
    Pretrain,
    /// Stage 2: visual instruction tuning (`train ift`).
    Ift,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Pretrain => "pretrain",
            Stage::Ift => "ift",
        }
    }
}

/// Numbers derived from a recipe and its data manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stage: Stage,
    pub run_dir: PathBuf,
    pub manifest: Manifest,
    pub data_root: Option<PathBuf>,
    pub samples: SampleCount,
    pub template: Template,
    pub aspect: Aspect,
    /// Devices per node × nodes.
    pub world_size: u64,
    pub micro_batch: u64,
    pub global_batch: u64,
    /// global / (micro × world).
    pub grad_accum: u64,
    /// ceil(samples / global): the last global batch of an epoch may be partial.
    pub steps_per_epoch: u64,
    pub epochs: u32,
    pub total_steps: u64,
    /// ceil(warmup_ratio × total_steps), as transformers' `get_warmup_steps`.
    pub warmup_steps: u64,
    /// `connector.init` and whether the file is present yet (stage 1 writes it).
    pub connector_init: Option<(PathBuf, bool)>,
}

impl Plan {
    /// Derives the plan from a checked recipe, counting samples in the local annotation file when
    /// it is present and taking the manifest's expected count otherwise.
    pub fn new(recipe: &Recipe) -> Result<Self, TrainError> {
        let manifest_path = &recipe.data.manifest;
        let manifest = Manifest::load(manifest_path)?;
        let data_root = manifest.data_root(manifest_path, recipe.data.root.as_deref());
        let samples = manifest.sample_count(data_root.as_deref())?;
        Ok(Self::derive(recipe, manifest, data_root, samples))
    }

    /// The same plan for the number of records a loaded data set really has (the trainer plans
    /// from the data it reads, not from the manifest's expectation).
    pub fn with_loaded_samples(&self, recipe: &Recipe, count: u64, path: PathBuf) -> Self {
        let samples = SampleCount { count, source: SampleCountSource::Counted { path } };
        Self::derive(recipe, self.manifest.clone(), self.data_root.clone(), samples)
    }

    fn derive(recipe: &Recipe, manifest: Manifest, data_root: Option<PathBuf>, samples: SampleCount) -> Self {
        let o = &recipe.optim;
        let world_size = recipe.devices.world_size();
        let grad_accum = o.global_batch / (o.micro_batch * world_size);
        let steps_per_epoch = samples.count.div_ceil(o.global_batch);
        let epochs = o.epochs.unwrap_or(1);
        let total_steps = o.max_steps.unwrap_or(steps_per_epoch * u64::from(epochs));
        let warmup_steps = (o.warmup_ratio * total_steps as f64).ceil() as u64;
        Self {
            stage: recipe.run.stage,
            run_dir: recipe.run.run_dir(),
            template: recipe.data.template.unwrap_or(manifest.template),
            aspect: recipe.data.aspect.unwrap_or(manifest.aspect),
            manifest,
            data_root,
            samples,
            world_size,
            micro_batch: o.micro_batch,
            global_batch: o.global_batch,
            grad_accum,
            steps_per_epoch,
            epochs,
            total_steps,
            warmup_steps,
            connector_init: recipe.connector.init().map(|p| (p.to_path_buf(), p.is_file())),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.samples.source {
            SampleCountSource::Manifest { missing } => format!(
                "from the manifest's expected_samples ({} is not present locally)",
                missing.display()
            ),
            SampleCountSource::Counted { path } => format!("counted in {}", path.display()),
        };
        writeln!(f, "stage:               {}", self.stage.name())?;
        writeln!(f, "run folder:          {}", self.run_dir.display())?;
        writeln!(f, "data set:            {} ({})", self.manifest.name, self.manifest.description)?;
        match &self.data_root {
            Some(root) => writeln!(f, "data root:           {}", root.display())?,
            None => writeln!(f, "data root:           (not set; give data.root)")?,
        }
        writeln!(f, "samples:             {} ({source})", self.samples.count)?;
        writeln!(f, "template / aspect:   {} / {}", self.template.name(), self.aspect.name())?;
        writeln!(f, "devices:             {}", self.world_size)?;
        writeln!(f, "micro batch:         {}", self.micro_batch)?;
        writeln!(f, "global batch:        {}", self.global_batch)?;
        writeln!(
            f,
            "grad accumulation:   {} = {} / ({} × {})",
            self.grad_accum, self.global_batch, self.micro_batch, self.world_size
        )?;
        writeln!(
            f,
            "steps per epoch:     {} = ceil({} / {})",
            self.steps_per_epoch, self.samples.count, self.global_batch
        )?;
        writeln!(f, "epochs:              {}", self.epochs)?;
        writeln!(f, "optimizer steps:     {}", self.total_steps)?;
        write!(f, "warmup steps:        {}", self.warmup_steps)?;
        if let Some((path, present)) = &self.connector_init {
            let state = if *present { "present" } else { "not present yet: run stage 1 first" };
            write!(f, "\nconnector init:      {} ({state})", path.display())?;
        }
        Ok(())
    }
}

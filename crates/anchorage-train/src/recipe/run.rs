use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Stage;

/// `[run]`: what the run is called and where it lands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Run name; the run folder is `<output_dir>/<name>`.
    pub name: String,
    /// Training stage this recipe is for; `train pretrain` and `train ift` refuse the other.
    pub stage: Stage,
    /// Seed for weight init, data order and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Folder that holds run folders.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
}

fn default_seed() -> u64 {
    42
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("checkpoints")
}

impl RunSection {
    /// The run folder: resolved recipe, TensorBoard events, metrics.jsonl, step checkpoints, export.
    pub fn run_dir(&self) -> PathBuf {
        self.output_dir.join(&self.name)
    }
}

/// `[checkpoint]`: how often to save and how many to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Save every N optimizer steps (and always at the end).
    #[serde(default = "default_every")]
    pub every_steps: u64,
    /// Keep the last K step checkpoints.
    #[serde(default = "default_keep")]
    pub keep_last: u32,
}

fn default_every() -> u64 {
    500
}
fn default_keep() -> u32 {
    2
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            every_steps: default_every(),
            keep_last: default_keep(),
        }
    }
}

/// `[log]`: console, metrics.jsonl and TensorBoard logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Log every N optimizer steps.
    #[serde(default = "default_log_every")]
    pub every_steps: u64,
    /// Write TensorBoard event files into `<run>/tensorboard`.
    #[serde(default = "default_true")]
    pub tensorboard: bool,
}

fn default_log_every() -> u64 {
    1
}
fn default_true() -> bool {
    true
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            every_steps: default_log_every(),
            tensorboard: true,
        }
    }
}

/// Compute backend. `cuda` and `wgpu` need a binary built with the cargo feature of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Pure-Rust CPU backend (default; what CI runs).
    Flex,
    Cuda,
    Wgpu,
}

/// Precision the gradients are summed in between replicas (`devices.reduce_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReduceDtype {
    /// The gradients as they are (f32).
    #[default]
    F32,
    /// Each gradient bucket rounded to bf16 before the sum: NCCL moves and adds bf16 (half the
    /// bytes); the CPU engines round the values and still add in f32. Parameters (ZeRO-1) and
    /// loss/token counts always travel in f32.
    Bf16,
}

/// What computes the matrix products of the linear layers (the LLM's, the vision tower's and the
/// connectors' that go through `anchorage_kernels::linear`) and of the LLM's attention
/// (`devices.matmul`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatmulEngine {
    /// burn's own product on the backend (on CUDA one fixed CubeCL kernel).
    #[default]
    Burn,
    /// NVIDIA's cuBLAS (`devices.backend = "cuda"` only; libcublas loaded at run time), forward
    /// and backward.
    Cublas,
}

/// `[devices]`: where the run executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesSection {
    #[serde(default = "default_backend")]
    pub backend: Backend,
    /// Device indices on each node; data parallel over them.
    #[serde(default = "default_ids")]
    pub ids: Vec<usize>,
    /// Number of nodes (one process per node).
    #[serde(default = "default_nodes")]
    pub nodes: u32,
    /// Precision of the gradient all-reduce between replicas.
    #[serde(default)]
    pub reduce_dtype: ReduceDtype,
    /// What computes the LLM's and towers' matrix products on the device.
    #[serde(default)]
    pub matmul: MatmulEngine,
}

fn default_backend() -> Backend {
    Backend::Flex
}
fn default_ids() -> Vec<usize> {
    vec![0]
}
fn default_nodes() -> u32 {
    1
}

impl Default for DevicesSection {
    fn default() -> Self {
        Self {
            backend: default_backend(),
            ids: default_ids(),
            nodes: default_nodes(),
            reduce_dtype: ReduceDtype::default(),
            matmul: MatmulEngine::default(),
        }
    }
}

impl DevicesSection {
    /// Data-parallel world size: devices per node times nodes.
    pub fn world_size(&self) -> u64 {
        self.ids.len() as u64 * u64::from(self.nodes)
    }
}

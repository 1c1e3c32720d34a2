//! The one place that picks a compute backend: library crates are generic over burn's `Backend`.

use anchorage_train::recipe::Backend;
use anchorage_train::trainer::{run_stage as run_on, TrainSummary};
use anchorage_train::{Plan, Recipe};
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;

/// Pure-Rust CPU backend (default, CI).
pub type Flex = burn::backend::Flex;

/// Trains on the recipe's backend (checked with [`check`] first).
pub fn run_stage(recipe: &Recipe, plan: &Plan, resume: bool) -> anyhow::Result<TrainSummary> {
    let summary = match recipe.devices.backend {
        #[cfg(feature = "cuda")]
        Backend::Cuda => run_with::<burn::backend::Cuda>(recipe, plan, resume, &burn::backend::cuda::CudaDevice::new(recipe.devices.ids[0]))?,
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => run_with::<burn::backend::Wgpu>(recipe, plan, resume, &Default::default())?,
        _ => run_with::<Flex>(recipe, plan, resume, &Default::default())?,
    };
    Ok(summary)
}

/// `llm.gradient_checkpointing` picks burn's balanced autodiff checkpointing: memory-bound ops
/// are recomputed in the backward pass instead of keeping their outputs.
fn run_with<B: burn::tensor::backend::Backend>(recipe: &Recipe, plan: &Plan, resume: bool, device: &B::Device) -> anyhow::Result<TrainSummary> {
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    Ok(if recipe.llm.gradient_checkpointing {
        run_on::<Autodiff<B, BalancedCheckpointing>>(recipe, plan, resume, progress, device)?
    } else {
        run_on::<Autodiff<B>>(recipe, plan, resume, progress, device)?
    })
}

/// Whether this binary can run `backend`; GPU backends are cargo features of the binary.
pub fn check(backend: Backend) -> Result<(), String> {
    let built = match backend {
        Backend::Flex => true,
        Backend::Cuda => cfg!(feature = "cuda"),
        Backend::Wgpu => cfg!(feature = "wgpu"),
    };
    if built {
        Ok(())
    } else {
        let name = match backend {
            Backend::Flex => "flex",
            Backend::Cuda => "cuda",
            Backend::Wgpu => "wgpu",
        };
        Err(format!(
            "devices.backend = \"{name}\" needs a binary built with `--features {name}` (this one was not)"
        ))
    }
}

//! The one place that picks a compute backend: library crates are generic over burn's `Backend`.

use anchorage_train::recipe::Backend;
use anchorage_train::trainer::{run_stage as run_on, StageData, TrainOptions, TrainSummary, World};
use anchorage_train::{Plan, Recipe};
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;

/// Pure-Rust CPU backend (default, CI).
pub type Flex = burn::backend::Flex;

/// Trains on the recipe's backend (checked with [`check`] first), one data-parallel replica per
/// entry of `devices.ids` (on flex every replica shares the CPU: useful to test the parallel path).
pub fn run_stage(recipe: &Recipe, plan: &Plan, options: TrainOptions, world: World, data: StageData) -> anyhow::Result<TrainSummary> {
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let options = TrainOptions { bar, ..options };
    let ids = &recipe.devices.ids;
    let summary = match recipe.devices.backend {
        #[cfg(feature = "cuda")]
        Backend::Cuda => {
            let devices: Vec<_> = ids.iter().map(|&i| burn::backend::cuda::CudaDevice::new(i)).collect();
            run_with::<burn::backend::Cuda>(recipe, plan, &options, &devices, world, data)?
        }
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => {
            let devices: Vec<_> = ids.iter().map(|&i| wgpu_device(i, ids.len())).collect();
            run_with::<burn::backend::Wgpu>(recipe, plan, &options, &devices, world, data)?
        }
        _ => run_with::<Flex>(recipe, plan, &options, &vec![Default::default(); ids.len()], world, data)?,
    };
    Ok(summary)
}

/// Device `id` of `count` on wgpu: the one device of a run on device 0 is wgpu's default (the best
/// adapter there is: a discrete GPU, or else an integrated, virtual or CPU one such as Mesa's
/// lavapipe); otherwise the `id`-th discrete GPU.
#[cfg(feature = "wgpu")]
fn wgpu_device(id: usize, count: usize) -> burn::backend::wgpu::WgpuDevice {
    if count == 1 && id == 0 {
        burn::backend::wgpu::WgpuDevice::DefaultDevice
    } else {
        burn::backend::wgpu::WgpuDevice::DiscreteGpu(id)
    }
}

/// Work that runs on whichever backend the user picks (evaluation, generation): [`on_backend`]
/// calls [`Self::run`] with the backend's type and device.
pub trait BackendJob {
    type Output;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> anyhow::Result<Self::Output>;
}

/// Runs `job` on device `id` of `backend`, after [`check_ready`].
pub fn on_backend<J: BackendJob>(backend: Backend, id: usize, job: J) -> anyhow::Result<J::Output> {
    check_ready(backend, &[id])?;
    on_checked_backend(backend, id, job)
}

/// [`on_backend`] for a caller that ran [`check_ready`] itself.
pub fn on_checked_backend<J: BackendJob>(backend: Backend, id: usize, job: J) -> anyhow::Result<J::Output> {
    match backend {
        #[cfg(feature = "cuda")]
        Backend::Cuda => job.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::new(id)),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => job.run::<burn::backend::Wgpu>(wgpu_device(id, 1)),
        _ => job.run::<Flex>(Default::default()),
    }
}

/// The backend's name as recipes and `--backend` write it.
pub fn name(backend: Backend) -> &'static str {
    match backend {
        Backend::Flex => "flex",
        Backend::Cuda => "cuda",
        Backend::Wgpu => "wgpu",
    }
}

/// `--matmul NAME` (generate, eval, bench parity): `devices.matmul`'s values.
pub fn parse_matmul(name: &str) -> Result<anchorage_train::recipe::MatmulEngine, String> {
    match name {
        "burn" => Ok(anchorage_train::recipe::MatmulEngine::Burn),
        "cublas" => Ok(anchorage_train::recipe::MatmulEngine::Cublas),
        other => Err(format!("unknown matmul engine `{other}`: burn or cublas")),
    }
}

/// `--backend NAME`.
pub fn parse(name: &str) -> Result<Backend, String> {
    match name {
        "flex" => Ok(Backend::Flex),
        "cuda" => Ok(Backend::Cuda),
        "wgpu" => Ok(Backend::Wgpu),
        other => Err(format!("unknown backend `{other}`: flex (CPU), cuda or wgpu")),
    }
}

/// Whether this binary can run `backend` ([`check`]) on the devices `ids` ([`check_devices`]):
/// what every command asks before it builds anything on a device.
pub fn check_ready(backend: Backend, ids: &[usize]) -> anyhow::Result<()> {
    check(backend).map_err(anyhow::Error::msg)?;
    check_devices(backend, ids).map_err(anyhow::Error::msg)
}

/// [`check_ready`] for a recipe's devices, then its `devices.matmul` engine: cuBLAS is checked
/// (libcublas loadable) and set for every product of this process.
pub fn check_recipe(recipe: &Recipe) -> anyhow::Result<()> {
    check_ready(recipe.devices.backend, &recipe.devices.ids)?;
    set_matmul(recipe.devices.matmul)
}

/// Sets the process's matrix-product engine (`devices.matmul`); cuBLAS must load.
pub fn set_matmul(engine: anchorage_train::recipe::MatmulEngine) -> anyhow::Result<()> {
    use anchorage_kernels::gemm;
    let engine = match engine {
        anchorage_train::recipe::MatmulEngine::Burn => gemm::MatmulEngine::Burn,
        anchorage_train::recipe::MatmulEngine::Cublas => {
            gemm::cublas_ready().map_err(anyhow::Error::msg)?;
            gemm::MatmulEngine::Cublas
        }
    };
    gemm::set_engine(engine);
    Ok(())
}

/// Whether the devices `ids` exist: on CUDA the driver is asked how many GPUs it sees (an index past
/// them would panic inside burn's backend); flex and wgpu have nothing to check here.
fn check_devices(backend: Backend, ids: &[usize]) -> Result<(), String> {
    #[cfg(feature = "cuda")]
    if backend == Backend::Cuda {
        let count = cudarc::driver::safe::CudaContext::device_count().map_err(|e| format!("devices.backend = \"cuda\": the NVIDIA driver did not start: {e:?}"))?;
        let count = count.max(0) as usize;
        if let Some(bad) = ids.iter().find(|&&i| i >= count) {
            return Err(match count {
                0 => format!("CUDA device {bad} does not exist: the driver sees no GPU"),
                _ => format!("CUDA device {bad} does not exist: the driver sees {count} GPU(s) (devices 0 to {})", count - 1),
            });
        }
    }
    let _ = (backend, ids);
    Ok(())
}

/// `llm.gradient_checkpointing` picks burn's balanced autodiff checkpointing: memory-bound ops
/// are recomputed in the backward pass instead of keeping their outputs.
fn run_with<B: burn::tensor::backend::Backend>(recipe: &Recipe, plan: &Plan, options: &TrainOptions, devices: &[B::Device], world: World, data: StageData) -> anyhow::Result<TrainSummary> {
    Ok(if recipe.llm.gradient_checkpointing {
        run_on::<Autodiff<B, BalancedCheckpointing>>(recipe, plan, options, devices, world, data)?
    } else {
        run_on::<Autodiff<B>>(recipe, plan, options, devices, world, data)?
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
        #[cfg(feature = "cuda")]
        if backend == Backend::Cuda {
            return cuda_libraries().and_then(|()| crate::cuda_headers::check());
        }
        Ok(())
    } else {
        let name = name(backend);
        Err(format!(
            "devices.backend = \"{name}\" needs a binary built with `--features {name}` (this one was not)"
        ))
    }
}

/// The CUDA libraries burn's backend loads at run time (cudarc, dynamic loading): a missing one is
/// an error naming it, instead of a panic inside cudarc on the first CUDA call.
#[cfg(feature = "cuda")]
fn cuda_libraries() -> Result<(), String> {
    // SAFETY: each probe only opens and closes a shared library by name (libloading).
    let present = unsafe {
        [
            ("libcuda (the NVIDIA driver)", cudarc::driver::sys::is_culib_present()),
            ("libnvrtc (the CUDA runtime compiler)", cudarc::nvrtc::sys::is_culib_present()),
            ("libnccl (NCCL)", cudarc::nccl::sys::is_culib_present()),
        ]
    };
    let missing: Vec<&str> = present.iter().filter(|(_, ok)| !ok).map(|(name, _)| *name).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "devices.backend = \"cuda\": cannot load {}. Install the NVIDIA driver and CUDA 12 runtime, or put the \
         folders holding them on LD_LIBRARY_PATH (a PyTorch install has libnvrtc and libnccl under \
         site-packages/nvidia/*/lib; cudarc looks for libnccl.so, so link libnccl.so.2 to that name)",
        missing.join(", ")
    ))
}

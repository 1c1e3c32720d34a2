//! The device memory CubeCL's allocator holds: what benchmarks and tests read to see how much a
//! step keeps alive (for example from the forward to the backward pass).

use burn::tensor::backend::Backend;

/// Bytes CubeCL's allocations on `device` hold now, on the CUDA and wgpu backends (and their
/// `Autodiff`, which shares the device); `None` on any other backend.
pub fn bytes_in_use<B: Backend>(device: &B::Device) -> Option<u64> {
    let any: &dyn std::any::Any = device;
    #[cfg(feature = "cuda")]
    if let Some(device) = any.downcast_ref::<burn::tensor::Device<burn::backend::Cuda>>() {
        return runtime_bytes::<cubecl::cuda::CudaRuntime>(device);
    }
    #[cfg(feature = "wgpu")]
    if let Some(device) = any.downcast_ref::<burn::tensor::Device<burn::backend::Wgpu>>() {
        return runtime_bytes::<cubecl::wgpu::WgpuRuntime>(device);
    }
    let _ = any;
    None
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn runtime_bytes<R: cubecl::Runtime>(device: &R::Device) -> Option<u64> {
    R::client(device).memory_usage().ok().map(|m| m.bytes_in_use)
}

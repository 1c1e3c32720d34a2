//! The cuBLAS call behind [`super::matmul`] on burn's CUDA backend (feature `cuda`).
//!
//! burn 0.21's CUDA backend (cubecl-cuda 0.10) runs its kernels on streams of its own that it does
//! not expose; it exposes a tensor's device memory through the compute client (`get_resource`).
//! So a product here waits for the client's queued work (`sync`: the operands are then complete),
//! runs one `cublasGemmStridedBatchedEx` on a stream of ours into a freshly allocated contiguous
//! output, and waits for that stream before the output is handed back, so burn's next kernels see
//! it written. The two waits cost the GPU the time to launch the next kernel (tens of
//! microseconds) per product; the 7B step's products take milliseconds each. Both sides use the
//! device's primary context (cubecl-cuda retains it, as `CudaContext::new` does here), so the
//! device pointers are valid for cuBLAS. Each thread keeps one stream and cuBLAS handle per device.
//!
//! Types: f32, f16 and bf16 operands of one dtype, accumulated in f32 (`CUBLAS_COMPUTE_32F`; for
//! f32 that is full f32, not TF32), written in the operands' dtype, as `torch.matmul` does by
//! default.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use burn::tensor::{backend::Backend, DType, Shape, Tensor};
use burn_cubecl::{kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::cuda::CudaRuntime;
use cudarc::cublas::{result as blas, sys, CudaBlas};
use cudarc::driver::{CudaContext, CudaStream};

use super::plan::{plan, GemmCall, Op, Operand};
use crate::cube::bridge;

/// libcublas loadable (cudarc opens it by name on the first call and panics when it cannot).
/// Probed once per process: every product asks, and the probe searches the library folders.
pub(super) fn library_ready() -> Result<(), String> {
    static READY: OnceLock<bool> = OnceLock::new();
    // SAFETY: the probe only opens and closes a shared library by name (libloading).
    if *READY.get_or_init(|| unsafe { sys::is_culib_present() }) {
        Ok(())
    } else {
        Err("devices.matmul = \"cublas\": cannot load libcublas (cuBLAS). Install the CUDA 12 or 13 runtime \
             libraries, or put the folder holding libcublas.so* and libcublasLt.so* on LD_LIBRARY_PATH (a PyTorch \
             install has them under site-packages/nvidia/cublas/lib or nvidia/cu13/lib); cudarc looks for \
             libcublas.so and libcublas.so.12, so link a libcublas.so.13 to libcublas.so"
            .into())
    }
}

/// Logs the first fallback to burn's product (then stays quiet: it would repeat every layer).
pub(super) fn warn_once(why: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("cuBLAS product not used, burn's ran instead (said once): {why}");
    }
}

/// [`super::cublas_matmul`]: `None` unless `B` is burn's plain CUDA backend.
pub(super) fn matmul<B: Backend, const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) -> Option<Result<Tensor<B, D>, String>> {
    if !bridge::is_plain::<B, CudaRuntime, D>(a) || !bridge::is_plain::<B, CudaRuntime, D>(b) {
        return None;
    }
    let ca = bridge::float_to_cube::<B, CudaRuntime, D>(a)?;
    let cb = bridge::float_to_cube::<B, CudaRuntime, D>(b)?;
    Some(product(ca, cb).and_then(|out| bridge::float_from_cube::<B, CudaRuntime, D>(out).ok_or_else(|| "the output is not a tensor of this backend".to_string())))
}

fn data_type(dtype: DType) -> Result<sys::cudaDataType, String> {
    Ok(match dtype {
        DType::F32 => sys::cudaDataType::CUDA_R_32F,
        DType::F16 => sys::cudaDataType::CUDA_R_16F,
        DType::BF16 => sys::cudaDataType::CUDA_R_16BF,
        other => return Err(format!("dtype {other:?} (cuBLAS runs f32, f16 and bf16 here)")),
    })
}

fn plan_of(a: &CubeTensor<CudaRuntime>, b: &CubeTensor<CudaRuntime>) -> Option<GemmCall> {
    plan(
        Operand { shape: a.meta.shape(), strides: a.meta.strides() },
        Operand { shape: b.meta.shape(), strides: b.meta.strides() },
    )
}

fn op(op: Op) -> sys::cublasOperation_t {
    match op {
        Op::N => sys::cublasOperation_t::CUBLAS_OP_N,
        Op::T => sys::cublasOperation_t::CUBLAS_OP_T,
    }
}

/// `a · b` into a new contiguous tensor, on cuBLAS.
fn product(a: CubeTensor<CudaRuntime>, b: CubeTensor<CudaRuntime>) -> Result<CubeTensor<CudaRuntime>, String> {
    if a.dtype != b.dtype {
        return Err(format!("operands of dtypes {:?} and {:?}", a.dtype, b.dtype));
    }
    if a.qparams.is_some() || b.qparams.is_some() {
        return Err("a quantized operand".into());
    }
    let dtype = data_type(a.dtype)?;
    library_ready()?;
    let (a, b, call) = match plan_of(&a, &b) {
        Some(call) => (a, b, call),
        None => {
            // A layout one call cannot read (batch dimensions that do not flatten): copy the
            // operands contiguous, as burn's own kernel launch does for such operands.
            let (a, b) = (into_contiguous(a), into_contiguous(b));
            let call = plan_of(&a, &b).ok_or_else(|| format!("shapes {:?} x {:?} (batch dimensions neither equal nor broadcast from ones)", a.meta.shape().to_vec(), b.meta.shape().to_vec()))?;
            (a, b, call)
        }
    };
    if !call.fits_i32() {
        return Err(format!("a product of {} x {} x {} in {} batches exceeds cuBLAS's 32-bit sizes", call.n, call.k, call.m, call.batch));
    }
    let client = a.client.clone();
    let out = empty_device_contiguous_dtype(client.clone(), a.device.clone(), Shape::from(call.out_shape.clone()), a.dtype);
    // The device memory first, then the wait: asking for a binding made on another thread's stream
    // queues that stream's completion on this thread's, which the wait then covers too.
    let resource = |t: &CubeTensor<CudaRuntime>| client.get_resource(t.handle.clone()).map_err(|e| format!("locating device memory: {e:?}"));
    let (ra, rb, rc) = (resource(&a)?, resource(&b)?, resource(&out)?);
    cubecl::future::block_on(client.sync()).map_err(|e| format!("waiting for the operands: {e:?}"))?;
    let engine = engine_for(a.device.index)?;
    let (alpha, beta) = (1.0f32, 0.0f32);
    // SAFETY: the pointers are the device memory of `b` (cuBLAS's A), `a` (its B) and `out`,
    // kept allocated by `ra`, `rb`, `rc` until the stream is waited for below; the client's queued
    // work is finished (synced above), so nothing else writes them meanwhile. `plan` keeps every
    // read inside the operands' extents (its tests check it against the strided tensors) and the
    // output holds `batch * m * n` elements of `dtype`. alpha and beta are host f32 values, as
    // `CUBLAS_COMPUTE_32F` with the default pointer mode takes them.
    let status = unsafe {
        engine.stream.context().bind_to_thread().map_err(|e| format!("binding CUDA device {}: {e:?}", a.device.index))?;
        blas::gemm_strided_batched_ex(
            *engine.blas.handle(),
            op(call.op_a),
            op(call.op_b),
            call.m as i32,
            call.n as i32,
            call.k as i32,
            (&alpha as *const f32).cast(),
            rb.resource().ptr as *const _,
            dtype,
            call.lda as i32,
            call.stride_a as i64,
            ra.resource().ptr as *const _,
            dtype,
            call.ldb as i32,
            call.stride_b as i64,
            (&beta as *const f32).cast(),
            rc.resource().ptr as *mut _,
            dtype,
            call.ldc as i32,
            call.stride_c as i64,
            call.batch as i32,
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    };
    let waited = engine.stream.synchronize();
    drop((ra, rb, rc));
    status.map_err(|e| format!("cublasGemmStridedBatchedEx ({call:?}): {e:?}"))?;
    waited.map_err(|e| format!("waiting for the cuBLAS stream: {e:?}"))?;
    Ok(out)
}

/// A stream of ours on one device and a cuBLAS handle bound to it.
struct Engine {
    blas: CudaBlas,
    stream: Arc<CudaStream>,
}

thread_local! {
    /// Never dropped (leaked, one per thread and device): cudarc's `CudaBlas` panics in its drop
    /// when `cublasDestroy` fails, and a thread-local dropped as a thread or the process exits
    /// would turn that into an abort after a finished run.
    static ENGINES: RefCell<HashMap<usize, &'static Engine>> = RefCell::new(HashMap::new());
}

/// This thread's engine for CUDA device `ordinal`, created on first use.
fn engine_for(ordinal: usize) -> Result<&'static Engine, String> {
    ENGINES.with(|engines| {
        if let Some(engine) = engines.borrow().get(&ordinal) {
            return Ok(*engine);
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| format!("opening CUDA device {ordinal}: {e:?}"))?;
        let stream = ctx.new_stream().map_err(|e| format!("creating a stream on CUDA device {ordinal}: {e:?}"))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cublasCreate on CUDA device {ordinal}: {e:?}"))?;
        let engine: &'static Engine = Box::leak(Box::new(Engine { blas, stream }));
        engines.borrow_mut().insert(ordinal, engine);
        Ok(engine)
    })
}

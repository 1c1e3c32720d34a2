//! Matrix products on a chosen engine: burn's own (every backend, the default) or NVIDIA's cuBLAS
//! on burn's CUDA backend (feature `cuda`, chosen with [`set_engine`]; a recipe's
//! `devices.matmul = "cublas"`).
//!
//! Why: without burn's `autotune` feature every CUDA product of burn 0.21 runs one fixed CubeCL
//! kernel (cubek's `Auto`), and on an H200 our 7B stage-1 step ran at 3.6% MFU against
//! transformers' 42.7% (docs/benchmarks.md). transformers' products are cuBLAS's. [`matmul`] is a
//! drop-in for burn's `matmul` on a plain (not `Autodiff`) backend: the frozen LLM's linear layers
//! ([`crate::linear::forward`], whose backward step calls it too) and the attention products of
//! [`crate::attention::recomputed_attention`] go through it. Where cuBLAS does not apply (another
//! backend, another engine, a dtype other than f32/f16/bf16, a broadcast cuBLAS cannot express)
//! burn's own product runs, so every call is correct on every backend.
//!
//! [`plan`] maps burn's strided row-major operands onto one column-major strided-batched call and
//! is checked on the CPU against an emulation of cuBLAS's semantics; the call itself (`cublas`,
//! feature `cuda`) is checked against burn's product by the CUDA parity tests.

pub mod plan;

#[cfg(feature = "cuda")]
mod cublas;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use burn::tensor::{backend::Backend, Tensor};

/// Which library computes [`matmul`]'s products on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulEngine {
    /// burn's own `matmul` (CubeCL's kernel on CUDA): the default.
    #[default]
    Burn,
    /// cuBLAS's `cublasGemmStridedBatchedEx` on burn's CUDA backend; burn's elsewhere.
    Cublas,
}

static ENGINE: AtomicU8 = AtomicU8::new(0);

/// Products [`matmul`] ran on cuBLAS, and those it handed back to burn after cuBLAS failed.
static CUBLAS_PRODUCTS: AtomicU64 = AtomicU64::new(0);
static CUBLAS_FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// How many of this process's [`matmul`] products ran on cuBLAS, and how many fell back to burn's
/// product after cuBLAS could not run them (each fallback's reason is logged once): a benchmark
/// says from these whether its products really were cuBLAS's.
pub fn cublas_counts() -> (u64, u64) {
    (CUBLAS_PRODUCTS.load(Ordering::Relaxed), CUBLAS_FALLBACKS.load(Ordering::Relaxed))
}

thread_local! {
    /// [`with_engine`]'s engine for this thread, over the process's.
    static THREAD_ENGINE: Cell<Option<MatmulEngine>> = const { Cell::new(None) };
}

/// Sets the engine for every later product in this process (all threads), as a recipe's
/// `devices.matmul` does.
pub fn set_engine(engine: MatmulEngine) {
    ENGINE.store(engine as u8, Ordering::Relaxed);
}

/// The engine products on this thread use: [`with_engine`]'s inside it, else [`set_engine`]'s
/// ([`MatmulEngine::Burn`] until it is called).
pub fn engine() -> MatmulEngine {
    THREAD_ENGINE.with(Cell::get).unwrap_or(match ENGINE.load(Ordering::Relaxed) {
        1 => MatmulEngine::Cublas,
        _ => MatmulEngine::Burn,
    })
}

/// Runs `f` with `engine` for this thread's products only (the engine before is restored after,
/// also when `f` panics): tests compare engines side by side in one process this way.
pub fn with_engine<T>(engine: MatmulEngine, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<MatmulEngine>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_ENGINE.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(THREAD_ENGINE.with(|e| e.replace(Some(engine))));
    f()
}

/// Whether cuBLAS can be used by this process: built with `cuda` and libcublas loadable. The error
/// says what is missing and how to fix it.
pub fn cublas_ready() -> Result<(), String> {
    #[cfg(feature = "cuda")]
    {
        cublas::library_ready()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("cuBLAS needs a binary built with `--features cuda` (this one was not)".into())
    }
}

/// `a · b` exactly as burn's `matmul` defines it (batch dimensions equal or broadcast), on cuBLAS
/// where the engine is [`MatmulEngine::Cublas`] and `B` is burn's plain CUDA backend, else burn's
/// own product. A cuBLAS failure is logged once and the product falls back to burn's.
pub fn matmul<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cuda")]
    if engine() == MatmulEngine::Cublas {
        match cublas::matmul(&a, &b) {
            Some(Ok(out)) => {
                CUBLAS_PRODUCTS.fetch_add(1, Ordering::Relaxed);
                return out;
            }
            Some(Err(why)) => {
                CUBLAS_FALLBACKS.fetch_add(1, Ordering::Relaxed);
                cublas::warn_once(&why);
            }
            None => {}
        }
    }
    a.matmul(b)
}

/// `a · b` on cuBLAS whatever the engine (`train bench matmul --kernels cublas`). `None`: `B` is not
/// burn's plain CUDA backend (or this crate was built without `cuda`). `Some(Err)`: cuBLAS cannot
/// run this product here, said in words.
pub fn cublas_matmul<B: Backend, const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) -> Option<Result<Tensor<B, D>, String>> {
    #[cfg(feature = "cuda")]
    {
        cublas::matmul(a, b)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (a, b);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_engine_overrides_the_process_engine_and_is_restored() {
        assert_eq!(engine(), MatmulEngine::Burn);
        let inner = with_engine(MatmulEngine::Cublas, || {
            let nested = with_engine(MatmulEngine::Burn, engine);
            (engine(), nested)
        });
        assert_eq!(inner, (MatmulEngine::Cublas, MatmulEngine::Burn));
        assert_eq!(engine(), MatmulEngine::Burn);
        let caught = std::panic::catch_unwind(|| with_engine(MatmulEngine::Cublas, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(engine(), MatmulEngine::Burn, "restored after a panic");
        // Another thread does not see this thread's engine.
        with_engine(MatmulEngine::Cublas, || assert_eq!(std::thread::spawn(engine).join().unwrap(), MatmulEngine::Burn));
    }

    #[test]
    fn products_off_cuda_are_burns_whatever_the_engine() {
        use burn::backend::Flex;
        let a = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &Default::default());
        let b = Tensor::<Flex, 2>::from_floats([[5.0, 6.0], [7.0, 8.0]], &Default::default());
        let got = with_engine(MatmulEngine::Cublas, || matmul(a.clone(), b.clone()));
        assert_eq!(got.into_data().to_vec::<f32>().unwrap(), vec![19.0, 22.0, 43.0, 50.0]);
        assert!(cublas_matmul(&a, &b).is_none());
    }
}

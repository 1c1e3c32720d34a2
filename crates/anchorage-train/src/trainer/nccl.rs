//! NCCL on CUDA (feature `cuda`): one communicator over every GPU of every node, rank = the
//! replica's global rank, and sums of flat tensors done by `ncclAllReduce` on the tensors' own
//! device memory (no trip through the host).
//!
//! How a run gets its communicator: node 0's first replica asks NCCL for a unique id
//! (`ncclGetUniqueId`), sends it to the other nodes over the node link's rendezvous
//! ([`NodeLink::broadcast`](super::node_link::NodeLink::broadcast)) and hands it to the other
//! replicas of its process through the [`Rendezvous`]; every replica then joins with
//! `ncclCommInitRank(world, id, global rank)` from its own thread (the calls block until every rank
//! has joined, so each replica must make it from its own thread, as ours do).
//!
//! How a sum runs: burn 0.21's CUDA backend (cubecl-cuda 0.10) keeps its own streams and exposes a
//! tensor's device memory through the compute client (`get_resource` on the handle). We wait for
//! the client's queued work (`sync`), so the gradient is complete, run the all-reduce on a stream of
//! our own in the same (primary) CUDA context, and wait for it before the tensor is used again. The
//! reduction is in place when the tensor owns its buffer, otherwise on a copy. A step's buckets are
//! launched back to back ([`NcclComm::sum_each`]): bucket k + 1 is assembled on burn's stream while
//! bucket k is summed on ours, and our stream is waited for once, after the last. cubecl-cuda's own
//! NCCL path (burn's `DistributedBackend`) cannot be used: its communicator ids are made inside one
//! process, so it cannot span nodes.

use std::any::Any;
use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use cubecl::cuda::{CudaDevice, CudaRuntime};
use cudarc::driver::safe::{CudaContext, CudaStream};
use cudarc::nccl::{result as nccl, sys as nccl_sys};

use super::parallel_error::ParallelError;
use crate::TrainError;

/// Bytes of an NCCL unique id (`ncclUniqueId`, `NCCL_UNIQUE_ID_BYTES`).
pub const ID_BYTES: usize = 128;

fn nccl_err(what: &str, e: impl std::fmt::Debug) -> TrainError {
    ParallelError::Collective { what: "NCCL", message: format!("{what}: {e:?}") }.into()
}

/// The CUDA ordinal of `device` when `B` is burn's CUDA backend (`CudaDevice`), else `None`.
pub fn cuda_ordinal<B: Backend>(device: &B::Device) -> Option<usize>
where
    B::Device: 'static,
{
    (device as &dyn Any).downcast_ref::<CudaDevice>().map(|d| d.index)
}

/// A fresh NCCL unique id, as bytes.
pub fn new_id() -> Result<Vec<u8>, TrainError> {
    let id = nccl::get_uniqueid().map_err(|e| nccl_err("ncclGetUniqueId (is libnccl loadable?)", e))?;
    Ok(id.internal.iter().map(|&c| c as u8).collect())
}

/// One replica's membership of the run's communicator.
pub struct NcclComm {
    comm: nccl_sys::ncclComm_t,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    rank: usize,
    world: usize,
}

// SAFETY: an NCCL communicator may be used from any thread as long as one thread uses it at a time;
// each replica owns its `NcclComm` and calls it from its own thread only (`&self` methods are only
// reached through the replica's `Peer`).
unsafe impl Send for NcclComm {}
unsafe impl Sync for NcclComm {}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NcclComm {{ rank: {}, world: {}, device: {} }}", self.rank, self.world, self.ctx.ordinal())
    }
}

impl NcclComm {
    /// Joins the communicator `id` as `rank` of `world`, on CUDA device `ordinal`. Blocks until
    /// every rank has joined.
    pub fn join(ordinal: usize, rank: usize, world: usize, id: &[u8]) -> Result<Self, TrainError> {
        if id.len() != ID_BYTES {
            return Err(nccl_err("joining", format!("a unique id of {} bytes, NCCL's have {ID_BYTES}", id.len())));
        }
        if rank >= world {
            return Err(nccl_err("joining", format!("rank {rank} of a world of {world}")));
        }
        let mut unique = nccl_sys::ncclUniqueId { internal: [0; ID_BYTES] };
        for (slot, &byte) in unique.internal.iter_mut().zip(id) {
            *slot = byte as _;
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| nccl_err(&format!("opening CUDA device {ordinal}"), e))?;
        let stream = ctx.new_stream().map_err(|e| nccl_err("creating the collective stream", e))?;
        let mut comm = MaybeUninit::<nccl_sys::ncclComm_t>::uninit();
        // SAFETY: `comm` is written by `ncclCommInitRank` on success; the id is a full 128-byte
        // unique id; the context of `ordinal` is current on this thread (`CudaContext::new`).
        let comm = unsafe {
            nccl::comm_init_rank(comm.as_mut_ptr(), world as i32, unique, rank as i32).map_err(|e| nccl_err(&format!("ncclCommInitRank (rank {rank} of {world}, device {ordinal})"), e))?;
            comm.assume_init()
        };
        Ok(Self { comm, ctx, stream, rank, world })
    }

    /// This replica's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks in the communicator.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Sums a flat tensor of `B` (burn's CUDA backend, f32, f16 or bf16) over every rank; every rank
    /// gets the total. Every rank must call this in the same order with tensors of the same length.
    pub fn sum<B: Backend>(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
        let mut total = None;
        self.sum_each(std::iter::once(Ok(tensor)), |sum| total = Some(sum))?;
        total.ok_or_else(|| nccl_err("sum", "no result"))
    }

    /// [`Self::sum`] of several tensors (a step's gradient buckets), one `ncclAllReduce` each, in
    /// order, each sum handed to `each` in order. Each all-reduce is launched without waiting for
    /// it, and the next tensor is taken from `tensors` (for the trainer, the next bucket assembled
    /// on burn's stream) while it runs; the collective stream is waited for once
    /// [`GROUP_ELEMENTS`] have been launched, and after the last launch, before those sums are
    /// handed back. burn 0.21 gives no hook inside the backward pass, so this is the overlap it
    /// allows: assembling bucket k + 1 beside the transfer of bucket k, not the transfer beside the
    /// backward. The group bounds the sums alive at once (ZeRO-1 keeps only a rank's share of each).
    pub fn sum_each<B: Backend>(&self, tensors: impl IntoIterator<Item = Result<Tensor<B, 1>, TrainError>>, mut each: impl FnMut(Tensor<B, 1>)) -> Result<(), TrainError> {
        // The launched sums and the device memory they keep alive, until the stream is waited for.
        let mut pending = Vec::new();
        let mut elements = 0usize;
        for tensor in tensors {
            match tensor.and_then(to_cube::<B>).and_then(|cube| self.launch(cube)) {
                Ok(launched) => {
                    elements += launched.0.meta.shape().num_elements();
                    pending.push(launched);
                }
                Err(e) => {
                    // Wait even when a launch failed: the sums already launched write into
                    // buffers that are freed on return.
                    if !pending.is_empty() {
                        let _ = self.stream.synchronize();
                    }
                    return Err(e);
                }
            }
            if elements >= GROUP_ELEMENTS {
                self.hand_back(&mut pending, &mut each)?;
                elements = 0;
            }
        }
        self.hand_back(&mut pending, &mut each)
    }

    /// Waits for the collective stream and hands the launched sums to `each`, in launch order.
    fn hand_back<B: Backend>(&self, pending: &mut Vec<(CubeTensor<CudaRuntime>, Option<impl Sized>)>, each: &mut impl FnMut(Tensor<B, 1>)) -> Result<(), TrainError> {
        if pending.is_empty() {
            return Ok(());
        }
        self.stream.synchronize().map_err(|e| nccl_err("waiting for the all-reduce", e))?;
        for (cube, resource) in pending.drain(..) {
            drop(resource);
            each(from_cube::<B>(cube)?);
        }
        Ok(())
    }

    /// Launches the in-place all-reduce of `cube` on the collective stream and returns the tensor
    /// with the device memory binding that keeps it alive while the stream runs (`None` for an empty
    /// tensor, which is not sent).
    fn launch(&self, cube: CubeTensor<CudaRuntime>) -> Result<(CubeTensor<CudaRuntime>, Option<impl Sized>), TrainError> {
        let datatype = match cube.dtype {
            DType::F32 => nccl_sys::ncclDataType_t::ncclFloat32,
            DType::BF16 => nccl_sys::ncclDataType_t::ncclBfloat16,
            DType::F16 => nccl_sys::ncclDataType_t::ncclFloat16,
            other => return Err(nccl_err("sum", format!("dtype {other:?}: f32, bf16 or f16 are summed"))),
        };
        // In place only on a contiguous buffer this tensor alone owns; otherwise on a fresh copy
        // (`into_contiguous` copies a strided tensor, `copy` a shared one).
        let cube = if !cube.is_contiguous() {
            burn_cubecl::kernel::into_contiguous(cube)
        } else if !cube.can_mut() || !cube.is_contiguous_buffer() {
            cube.copy()
        } else {
            cube
        };
        let count = cube.meta.shape().num_elements();
        if count == 0 {
            return Ok((cube, None));
        }
        // Every queued kernel of this client has finished, so the buffer holds the whole tensor
        // (this waits for burn's stream only, not for the sums already on the collective stream).
        cubecl::future::block_on(cube.client.sync()).map_err(|e| nccl_err("waiting for the gradients", e))?;
        let resource = cube.client.get_resource(cube.handle.clone()).map_err(|e| nccl_err("locating the tensor's device memory", e))?;
        let ptr = resource.resource().ptr;
        self.ctx.bind_to_thread().map_err(|e| nccl_err("binding the CUDA context", e))?;
        // SAFETY: `ptr` is the device address of `count` contiguous elements of `datatype` that
        // this tensor alone owns (checked above) and that no queued kernel writes (synced above);
        // the caller keeps `resource` (the allocation) and the tensor alive, and issues no burn
        // operation on the tensor, until it has waited for the collective stream.
        unsafe {
            nccl::all_reduce(ptr as *const _, ptr as *mut _, count, datatype, nccl_sys::ncclRedOp_t::ncclSum, self.comm, self.stream.cu_stream() as _)
                .map_err(|e| nccl_err(&format!("ncclAllReduce of {count} elements (rank {} of {})", self.rank, self.world), e))?;
        }
        Ok((cube, Some(resource)))
    }
}

/// Elements of all-reduces launched before the collective stream is waited for and their sums
/// handed back: four of the trainer's gradient buckets (512 MiB of f32).
const GROUP_ELEMENTS: usize = 4 * super::parallel::BUCKET_ELEMENTS;

/// The CubeCL tensor under a tensor of `B` (burn's CUDA backend).
fn to_cube<B: Backend>(tensor: Tensor<B, 1>) -> Result<CubeTensor<CudaRuntime>, TrainError> {
    let TensorPrimitive::Float(primitive) = tensor.into_primitive() else {
        return Err(nccl_err("sum", "a quantized tensor"));
    };
    let boxed: Box<dyn Any> = Box::new(primitive);
    match boxed.downcast::<CubeTensor<CudaRuntime>>() {
        Ok(cube) => Ok(*cube),
        Err(_) => Err(nccl_err("sum", "a tensor that is not on burn's CUDA backend")),
    }
}

/// [`to_cube`] undone.
fn from_cube<B: Backend>(cube: CubeTensor<CudaRuntime>) -> Result<Tensor<B, 1>, TrainError> {
    let boxed: Box<dyn Any> = Box::new(cube);
    match boxed.downcast::<B::FloatTensorPrimitive>() {
        Ok(primitive) => Ok(Tensor::from_primitive(TensorPrimitive::Float(*primitive))),
        Err(_) => Err(nccl_err("sum", "the backend's float tensor is not a CUDA tensor")),
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialised by `ncclCommInitRank` and is destroyed once.
        if let Err(e) = unsafe { nccl::comm_destroy(self.comm) } {
            tracing::warn!(rank = self.rank, error = ?e, "destroying the NCCL communicator");
        }
    }
}

//! Data parallel over devices and nodes through burn-collective: one replica per device, each
//! replica computes the gradients of its share of the global batch, the gradients are summed
//! across every replica (all-reduce), and every replica then takes the same optimizer step, so the
//! replicas never drift apart (DDP's scheme).
//!
//! Who gets which samples: a step's global batch is cut into micro-batch slices of `micro_batch`
//! data positions, slice `j` goes to global rank `j mod world` (accelerate's batch-sampler
//! sharding, which LLaVA's trainer uses), and global rank `g` lives on node `g / devices` as local
//! device `g mod devices`. The loss of a micro-batch is divided by the number of micro-batches of
//! the whole step (`world × accumulation`), so the summed gradient is the mean of micro-batch
//! means: the same as one device accumulating every slice (tested, up to summation order).
//!
//! Several nodes: one process per node, each with the same recipe and data. Within a node
//! burn-collective sums across the devices; between nodes the local sums travel over
//! [`NodeLink`](super::node_link::NodeLink) (node 0 listens on `--master`), and the total is
//! broadcast back to the node's devices. See the README for the launch.
//!
//! On CUDA (feature `cuda`) none of that: one NCCL communicator spans every GPU of every node
//! (rank = global rank) and sums the buckets on device memory (`nccl.rs`); the node link only
//! carries NCCL's unique id from node 0 to the others (and ZeRO-1's checkpoint shards).

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_collective::{all_reduce, broadcast, finish_collective, register, CollectiveConfig, PeerId, ReduceOperation};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::node_link::NodeLink;
pub use super::parallel_error::ParallelError;
pub use super::rendezvous::Rendezvous;
use crate::recipe::ReduceDtype;
use crate::TrainError;


/// Where this process sits in a multi-node run (one process per node).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRole {
    /// This node's index, 0-based; node 0 writes the run folder and hosts the link.
    pub rank: u32,
    /// `HOST:PORT` of node 0's link: node 0 listens on the port, the others connect.
    pub master: String,
}

/// The data-parallel layout of a run: how many devices here, how many nodes, and which node this is.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// Devices (replicas) in this process.
    pub local: usize,
    /// Number of nodes.
    pub nodes: u32,
    /// This node's role; `None` on a single node.
    pub node: Option<NodeRole>,
    /// Where the process's first replica hands the others the collective's id (NCCL on CUDA).
    pub rendezvous: Rendezvous,
    /// Precision of the gradient sums (`devices.reduce_dtype`).
    pub reduce_dtype: ReduceDtype,
}

impl World {
    /// One device, one node.
    pub fn single() -> Self {
        Self::new(1, 1, None)
    }

    /// `local` devices here, `nodes` nodes, this node's role.
    pub fn new(local: usize, nodes: u32, node: Option<NodeRole>) -> Self {
        Self { local, nodes, node, rendezvous: Rendezvous::default(), reduce_dtype: ReduceDtype::F32 }
    }

    /// Replicas in the whole run.
    pub fn size(&self) -> usize {
        self.local * self.nodes as usize
    }

    /// This node's index.
    pub fn node_rank(&self) -> usize {
        self.node.as_ref().map_or(0, |n| n.rank as usize)
    }

    /// Global rank of local device `local`.
    pub fn global_rank(&self, local: usize) -> usize {
        self.node_rank() * self.local + local
    }

    /// Whether this process writes the run folder (metrics, checkpoints, exports).
    pub fn is_leader(&self) -> bool {
        self.node_rank() == 0
    }

    /// Joins the other nodes (several nodes only): the link the first local replica sums over.
    pub fn link(&self, fingerprint: u64) -> Result<Option<Arc<Mutex<NodeLink>>>, TrainError> {
        match &self.node {
            Some(node) if self.nodes > 1 => Ok(Some(Arc::new(Mutex::new(NodeLink::join(node.rank, self.nodes, &node.master, fingerprint)?)))),
            _ => Ok(None),
        }
    }
}

/// One replica's handle on the sums across replicas.
#[derive(Clone)]
pub struct Peer {
    /// Local device index (burn-collective's peer id within this node).
    pub id: PeerId,
    /// Devices on this node.
    local: usize,
    /// The link to the other nodes; only the node's first replica holds it.
    link: Option<Arc<Mutex<NodeLink>>>,
    /// Several nodes: the other local replicas receive the total by broadcast.
    nodes: bool,
    /// Gradients are rounded to bf16 for their sum (`devices.reduce_dtype = "bf16"`).
    bf16: bool,
    /// CUDA: the NCCL communicator over every replica of the run, which does every sum.
    #[cfg(feature = "cuda")]
    nccl: Option<Arc<super::nccl::NcclComm>>,
}

impl Peer {
    /// Registers local device `local` (blocks until every local replica registered); the first
    /// replica of a node also gets the node `link`.
    ///
    /// On CUDA it joins the run's NCCL communicator instead: the first replica of node 0 makes
    /// its unique id, which reaches the other nodes over the link and the other local replicas
    /// through `world.rendezvous`.
    pub fn register<B: Backend>(world: &World, local: usize, device: &B::Device, link: Option<Arc<Mutex<NodeLink>>>) -> Result<Self, TrainError> {
        let id = PeerId::from(local);
        let bf16 = world.reduce_dtype == ReduceDtype::Bf16;
        #[cfg(feature = "cuda")]
        if let Some(ordinal) = super::nccl::cuda_ordinal::<B>(device) {
            let comm = join_nccl(world, local, ordinal, link.as_ref())?;
            return Ok(Self { id, local: world.local, link, nodes: world.nodes > 1, bf16, nccl: Some(Arc::new(comm)) });
        }
        if world.local > 1 {
            let config = CollectiveConfig::default().with_num_devices(world.local);
            register::<B>(id, device.clone(), config).map_err(|e| collective_err("register", e))?;
        }
        Ok(Self {
            id,
            local: world.local,
            link,
            nodes: world.nodes > 1,
            bf16,
            #[cfg(feature = "cuda")]
            nccl: None,
        })
    }

    /// Whether burn-collective sums across this node's devices (several local devices, not NCCL).
    fn burn_collective(&self) -> bool {
        #[cfg(feature = "cuda")]
        if self.nccl.is_some() {
            return false;
        }
        self.local > 1
    }

    /// Sums a flat tensor over every replica of the run: burn-collective across this node's
    /// devices, then the node link across nodes, then a broadcast of the total to this node's
    /// devices.
    fn sum<B: Backend>(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
        #[cfg(feature = "cuda")]
        if let Some(comm) = &self.nccl {
            return comm.sum(tensor);
        }
        let mut tensor = tensor;
        if self.local > 1 {
            let sum = all_reduce::<B>(self.id, tensor.into_primitive().tensor(), ReduceOperation::Sum).map_err(|e| collective_err("all-reduce", e))?;
            tensor = Tensor::from_primitive(TensorPrimitive::Float(sum));
        }
        if !self.nodes {
            return Ok(tensor);
        }
        let total = match &self.link {
            Some(link) => {
                let device = tensor.device();
                let mut values = tensor.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| ParallelError::Tensor { message: format!("{e:?}") })?;
                link.lock().map_err(|_| ParallelError::Link { message: "poisoned by a panicked thread".into() })?.sum(&mut values)?;
                let n = values.len();
                Some(Tensor::<B, 1>::from_data(TensorData::new(values, [n]), &device))
            }
            None => None,
        };
        if self.local == 1 {
            return total.ok_or_else(|| ParallelError::Link { message: "a multi-node run without a link".into() }.into());
        }
        let total = broadcast::<B>(self.id, total.map(|t| t.into_primitive().tensor())).map_err(|e| collective_err("broadcast", e))?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(total)))
    }

    /// Sums every trainable parameter's gradient across the replicas, each sum in f32. Gradients
    /// are taken in the module's visiting order (the same on every replica and every node, unlike
    /// parameter ids, which are random per process), flattened into buckets of at most
    /// [`BUCKET_ELEMENTS`] and reduced one bucket at a time, as DDP does: a few large transfers
    /// instead of one per parameter. A parameter without a gradient here (a replica with no sample
    /// this step) contributes zeros.
    ///
    /// With `devices.reduce_dtype = "bf16"` each bucket is rounded to bf16 first: NCCL sums the
    /// bf16 buffer (half the bytes), the other engines sum the rounded values in f32.
    pub fn sum_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(&self, module: &M, grads: GradientsParams) -> Result<GradientsParams, TrainError> {
        self.sum_per_parameter(module, grads, Keep::Gradients)
    }

    /// [`Self::sum_gradients`] handing back the sums of the `owned` parameters only (ZeRO-1: a
    /// rank steps only those), each copied out of its bucket as the bucket's sum arrives, so that
    /// a rank never holds the summed gradients of the whole model: about `1 / world` of them.
    pub fn sum_owned_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(&self, module: &M, grads: GradientsParams, owned: &HashSet<ParamId>) -> Result<GradientsParams, TrainError> {
        self.sum_per_parameter(module, grads, Keep::Owned(owned))
    }

    /// [`Self::sum_gradients`] for values that must arrive exactly (ZeRO-1's parameters): always in
    /// the tensors' own precision, each sum handed back in its tensor's dtype.
    pub fn sum_parameters<B: AutodiffBackend, M: AutodiffModule<B>>(&self, module: &M, values: GradientsParams) -> Result<GradientsParams, TrainError> {
        self.sum_per_parameter(module, values, Keep::Parameters)
    }

    fn sum_per_parameter<B: AutodiffBackend, M: AutodiffModule<B>>(&self, module: &M, grads: GradientsParams, keep: Keep<'_>) -> Result<GradientsParams, TrainError> {
        /// Each trainable parameter's id, shape and the dtype its sum is handed back in, and its
        /// flattened tensor (`None`: zeros, made only with its bucket).
        struct Take<'a, B: AutodiffBackend> {
            grads: &'a mut GradientsParams,
            parameters: bool,
            taken: Vec<Taken>,
            flats: Vec<Option<Tensor<B::InnerBackend, 1>>>,
            device: Option<B::Device>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let value = param.val();
                if !value.is_require_grad() {
                    return;
                }
                self.device.get_or_insert_with(|| value.device());
                let dims = value.dims().to_vec();
                let n = dims.iter().product();
                let flat = self.grads.remove::<B::InnerBackend, D>(param.id).map(|g| g.reshape([n]));
                // Gradient sums come back in f32, whatever dtype the gradient had (a bf16 LLM's
                // under a sharded master is summed as it came out of the backward pass). A
                // parameter sum comes back in its own dtype; a missing one's in f32, which
                // ZeRO-1 casts to the parameter's dtype as it puts the values back (`zero.rs`).
                let dtype = match &flat {
                    Some(flat) if self.parameters => flat.dtype(),
                    _ => DType::F32,
                };
                self.taken.push(Taken { id: param.id, dims, n, dtype });
                self.flats.push(flat);
            }
        }
        let mut grads = grads;
        let parameters = matches!(keep, Keep::Parameters);
        let mut take = Take::<B> { grads: &mut grads, parameters, taken: Vec::new(), flats: Vec::new(), device: None };
        module.visit(&mut take);
        let (taken, mut flats, Some(device)) = (take.taken, take.flats, take.device) else { return Ok(GradientsParams::new()) };

        // Buckets: runs of consecutive parameters of at most BUCKET_ELEMENTS (a larger parameter alone).
        let ranges = bucket_ranges(taken.iter().map(|t| t.n));
        // Each bucket in f32 (exact for bf16 and f16 values), assembled only when its turn comes
        // and taking its parameters' tensors as it is: the step holds the values not yet
        // bucketed and the sums handed back so far, never a second copy of the whole model.
        let buckets = ranges.iter().map(|range| {
            let parts = range.clone().map(|i| match flats[i].take() {
                Some(flat) => flat.cast(DType::F32),
                None => Tensor::zeros([taken[i].n], &device),
            });
            Tensor::cat(parts.collect(), 0)
        });
        let mut out = GradientsParams::new();
        let mut bucket = 0;
        self.sum_buckets(buckets, self.bf16 && !parameters, |sum| {
            split_sum(&taken[ranges[bucket].clone()], sum, &keep, &mut out);
            bucket += 1;
        })?;
        Ok(out)
    }

    /// Sums each bucket over every replica, in order, each rounded to bf16 first when `bf16`
    /// (NCCL then moves and adds the bf16 buffer; the CPU engines add the rounded values in f32),
    /// and hands each sum to `each` in f32 as it arrives. On NCCL a bucket is assembled while the
    /// previous one's all-reduce runs ([`NcclComm::sum_each`](super::nccl::NcclComm::sum_each)).
    fn sum_buckets<B: Backend>(&self, buckets: impl Iterator<Item = Tensor<B, 1>>, bf16: bool, mut each: impl FnMut(Tensor<B, 1>)) -> Result<(), TrainError> {
        #[cfg(feature = "cuda")]
        if let Some(comm) = &self.nccl {
            let buckets = buckets.map(|bucket| Ok(if bf16 { bucket.cast(DType::BF16) } else { bucket }));
            return comm.sum_each(buckets, |sum| each(if bf16 { sum.cast(DType::F32) } else { sum }));
        }
        for bucket in buckets {
            let bucket = if bf16 { bucket.cast(DType::BF16).cast(DType::F32) } else { bucket };
            each(self.sum(bucket)?);
        }
        Ok(())
    }

    /// Sums a few numbers (losses, counts) across the replicas, in f32.
    pub fn sum_values<B: Backend>(&self, values: &[f64], device: &B::Device) -> Result<Vec<f64>, TrainError> {
        let data = TensorData::new(values.iter().map(|&v| v as f32).collect::<Vec<_>>(), [values.len()]);
        let sum = self.sum(Tensor::<B, 1>::from_data(data, device))?.into_data();
        let sum = sum.convert::<f32>().to_vec::<f32>().map_err(|e| ParallelError::Tensor { message: format!("{e:?}") })?;
        Ok(sum.into_iter().map(f64::from).collect())
    }

    /// Node 0's first replica gets every node's `bytes` in node order (its own first), the other
    /// nodes' first replicas get `None`; on a single node, just its own. Every node calls it at the
    /// same point of the run.
    pub fn gather(&self, bytes: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>, TrainError> {
        match &self.link {
            Some(link) => link.lock().map_err(|_| ParallelError::Link { message: "poisoned by a panicked thread".into() })?.gather(bytes),
            None => Ok(Some(vec![bytes])),
        }
    }

    /// Leaves the collective.
    pub fn finish<B: Backend>(&self) {
        if self.burn_collective() {
            if let Err(e) = finish_collective::<B>(self.id) {
                tracing::warn!(peer = %self.id, error = ?e, "leaving the collective");
            }
        }
    }
}

/// How long a replica waits for its process's first replica to publish the NCCL id: the first
/// replica may be waiting for the other nodes to start.
#[cfg(feature = "cuda")]
const RENDEZVOUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Joins the run's NCCL communicator as local replica `local` on CUDA device `ordinal` (see
/// [`Peer::register`]).
#[cfg(feature = "cuda")]
fn join_nccl(world: &World, local: usize, ordinal: usize, link: Option<&Arc<Mutex<NodeLink>>>) -> Result<super::nccl::NcclComm, TrainError> {
    use super::nccl;
    let id = if local == 0 {
        let made = (|| -> Result<Vec<u8>, TrainError> {
            let mine = if world.is_leader() { Some(nccl::new_id()?) } else { None };
            match link {
                Some(link) => link.lock().map_err(|_| ParallelError::Link { message: "poisoned by a panicked thread".into() })?.broadcast(mine),
                None => mine.ok_or_else(|| ParallelError::Link { message: "a multi-node run without a link".into() }.into()),
            }
        })();
        world.rendezvous.publish(made.as_ref().map(Clone::clone).map_err(ToString::to_string));
        made?
    } else {
        world.rendezvous.wait(RENDEZVOUS_TIMEOUT)?
    };
    nccl::NcclComm::join(ordinal, world.global_rank(local), world.size(), &id)
}

/// Largest gradient bucket reduced in one transfer (elements; 128 MiB of f32).
pub const BUCKET_ELEMENTS: usize = 1 << 25;

/// One trainable parameter as [`Peer::sum_per_parameter`] takes it.
struct Taken {
    id: ParamId,
    dims: Vec<usize>,
    n: usize,
    /// The dtype its sum is handed back in.
    dtype: DType,
}

/// Which sums [`Peer::sum_per_parameter`] hands back.
enum Keep<'a> {
    /// Every parameter's gradient sum, in f32.
    Gradients,
    /// The gradient sums of these parameters only, in f32.
    Owned(&'a HashSet<ParamId>),
    /// Every parameter's sum, in its own dtype (ZeRO-1's stepped values).
    Parameters,
}

/// Runs of consecutive parameters (by element count) of at most [`BUCKET_ELEMENTS`] together; a
/// larger parameter alone.
fn bucket_ranges(sizes: impl Iterator<Item = usize>) -> Vec<std::ops::Range<usize>> {
    let sizes: Vec<usize> = sizes.collect();
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < sizes.len() {
        let mut end = start + 1;
        let mut size = sizes[start];
        while end < sizes.len() && size + sizes[end] <= BUCKET_ELEMENTS {
            size += sizes[end];
            end += 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// Registers in `out` the parts of one bucket's sum that `keep` asks for, each in its parameter's
/// shape and in the dtype [`Taken`] names. Kept parts of a bucket that is not kept whole are
/// copied out of it (`x · 1` is `x` exactly), so that the bucket is freed when this returns.
fn split_sum<B: Backend>(taken: &[Taken], sum: Tensor<B, 1>, keep: &Keep<'_>, out: &mut GradientsParams) {
    let kept = |t: &Taken| match keep {
        Keep::Owned(owned) => owned.contains(&t.id),
        Keep::Gradients | Keep::Parameters => true,
    };
    let whole = taken.iter().all(kept);
    let mut offset = 0;
    for t in taken {
        if kept(t) {
            let part = sum.clone().slice(offset..offset + t.n).cast(t.dtype);
            let part = if whole { part } else { part.mul_scalar(1.0) };
            register_grad::<B>(out, t.id, part, &t.dims);
        }
        offset += t.n;
    }
}

/// Registers a flat gradient under `id` with the parameter's rank and shape.
fn register_grad<B: Backend>(grads: &mut GradientsParams, id: ParamId, flat: Tensor<B, 1>, dims: &[usize]) {
    match dims.len() {
        1 => grads.register::<B, 1>(id, flat),
        2 => grads.register::<B, 2>(id, flat.reshape([dims[0], dims[1]])),
        3 => grads.register::<B, 3>(id, flat.reshape([dims[0], dims[1], dims[2]])),
        4 => grads.register::<B, 4>(id, flat.reshape([dims[0], dims[1], dims[2], dims[3]])),
        5 => grads.register::<B, 5>(id, flat.reshape([dims[0], dims[1], dims[2], dims[3], dims[4]])),
        rank => panic!("parameter of rank {rank}: gradients of rank 1 to 5 are supported"),
    }
}

fn collective_err(what: &'static str, e: burn_collective::CollectiveError) -> TrainError {
    ParallelError::Collective { what, message: format!("{e:?}") }.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn taken(sizes: &[(usize, DType)]) -> Vec<Taken> {
        sizes.iter().map(|&(n, dtype)| Taken { id: ParamId::new(), dims: vec![n], n, dtype }).collect()
    }

    #[test]
    fn a_bucket_sum_is_split_into_the_kept_parameters_in_their_dtypes() {
        let sum = Tensor::<Flex, 1>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0 + 1.0 / 512.0], [6]), &Default::default());
        let params = taken(&[(2, DType::F32), (3, DType::F32), (1, DType::BF16)]);
        let get = |g: &mut GradientsParams, t: &Taken| g.remove::<Flex, 1>(t.id).map(|v| (v.dtype(), v.into_data().convert::<f32>().to_vec::<f32>().unwrap()));

        let owned: HashSet<ParamId> = [params[1].id].into();
        let mut out = GradientsParams::new();
        split_sum(&params, sum.clone(), &Keep::Owned(&owned), &mut out);
        assert_eq!(get(&mut out, &params[1]), Some((DType::F32, vec![3.0, 4.0, 5.0])));
        assert!(get(&mut out, &params[0]).is_none() && get(&mut out, &params[2]).is_none(), "only the owned part is kept");

        let mut out = GradientsParams::new();
        split_sum(&params, sum, &Keep::Parameters, &mut out);
        assert_eq!(get(&mut out, &params[0]), Some((DType::F32, vec![1.0, 2.0])));
        assert_eq!(get(&mut out, &params[2]), Some((DType::BF16, vec![6.0])), "a parameter's sum in its own dtype");
    }
}

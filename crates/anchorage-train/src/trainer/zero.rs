//! ZeRO-1 (`optim.zero_stage = 1`): the AdamW state is sharded by parameter across the
//! data-parallel ranks. Each rank owns a fixed share of the trainable parameters, keeps AdamW's
//! moments for those only, and steps only them (on the full, already summed and clipped
//! gradients); the updated values of every owned parameter are then made identical on every rank
//! by the same sum the gradients travel through: each rank contributes its own parameters' new
//! values and zeros for the rest, and since `x + 0 = x` exactly in floating point, every rank ends
//! the step with bit-for-bit the weights an unsharded step gives. The optimizer memory of a rank
//! is about `1 / world` of the unsharded one (DeepSpeed's ZeRO stage 1), a bf16 LLM's f32 master
//! included (`master.rs`).
//!
//! Checkpoints hold one `optim-rank-R.bin` per global rank, keyed by parameter position (ids are
//! random per process): node 0 gets its workers' shards over channels and, over several nodes, the
//! other nodes' over the node link ([`pack`]/[`unpack`]); on resume each node reads its ranks' shards.
//!
//! Ownership is decided from the module's visiting order (the same on every rank, unlike parameter
//! ids): the parameters in that order each go to the rank holding the fewest elements so far
//! (ties to the lower rank), which balances the shards by element count.

use std::collections::HashSet;

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

use super::parallel::Peer;
use crate::{Settings, TrainError};

/// The file of rank `rank`'s optimizer shard in a step checkpoint.
pub(crate) fn shard_file(rank: usize) -> String {
    format!("optim-rank-{rank}.bin")
}

/// Whether the run shards its optimizer state: stage 1 with more than one replica in the run
/// (with a single replica, stage 1 is the same as stage 0 and changes nothing).
pub(crate) fn sharded(settings: &Settings) -> bool {
    settings.optim.zero_stage == 1 && settings.plan.world_size > 1
}

/// Whether a checkpoint needs the other nodes' shards (sharded over several nodes): every node
/// then takes part in writing it, sending its shards to node 0.
pub(crate) fn gathers(settings: &Settings) -> bool {
    sharded(settings) && settings.world.nodes > 1
}

/// One node's shards as one buffer for the node link: each one's length (u64, little-endian),
/// then its bytes.
pub(crate) fn pack(shards: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(shards.iter().map(|s| s.len() + 8).sum());
    for shard in shards {
        out.extend_from_slice(&(shard.len() as u64).to_le_bytes());
        out.extend_from_slice(shard);
    }
    out
}

/// The shards of a [`pack`]ed buffer; an error when it is cut short.
pub(crate) fn unpack(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut shards = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at_checked(8).ok_or("a shard length cut short")?;
        let len = u64::from_le_bytes(len.try_into().map_err(|_| "a shard length cut short")?) as usize;
        let (shard, rest) = rest.split_at_checked(len).ok_or_else(|| format!("a shard of {len} bytes with {} left", rest.len()))?;
        shards.push(shard.to_vec());
        bytes = rest;
    }
    Ok(shards)
}

/// Every float parameter's id, in visiting order.
pub(crate) fn param_ids<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

/// An optimizer record keyed by each parameter's position in visiting order (`ids`) instead of
/// its id, as the shard files hold it: parameter ids are random per process, and a shard written
/// by another node must match the weights node 0 wrote when the run resumes.
pub(crate) fn by_position<R, V>(record: R, ids: &[ParamId]) -> R
where
    R: IntoIterator<Item = (ParamId, V)> + FromIterator<(ParamId, V)>,
{
    let position: std::collections::HashMap<ParamId, u64> = ids.iter().enumerate().map(|(i, id)| (*id, i as u64)).collect();
    record.into_iter().filter_map(|(id, v)| position.get(&id).map(|&i| (ParamId::from(i), v))).collect()
}

/// The inverse of [`by_position`]: a shard's record keyed by this process's parameter ids.
pub(crate) fn by_id<R, V>(record: R, ids: &[ParamId]) -> Result<R, String>
where
    R: IntoIterator<Item = (ParamId, V)> + FromIterator<(ParamId, V)>,
{
    record
        .into_iter()
        .map(|(position, v)| match ids.get(position.val() as usize) {
            Some(id) => Ok((*id, v)),
            None => Err(format!("optimizer state for parameter {} of a model with {}", position.val(), ids.len())),
        })
        .collect()
}

/// The parameters global rank `rank` of `world` owns: trainable (gradient-requiring) float
/// parameters, assigned in visiting order to the least-loaded rank by element count.
pub(crate) fn owned_params<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, world: usize, rank: usize) -> HashSet<ParamId> {
    struct Sizes(Vec<(ParamId, usize)>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Sizes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            if value.is_require_grad() {
                self.0.push((param.id, value.shape().num_elements()));
            }
        }
    }
    let mut sizes = Sizes(Vec::new());
    module.visit(&mut sizes);
    let mut load = vec![0usize; world.max(1)];
    let mut owned = HashSet::new();
    for (id, n) in sizes.0 {
        let (least, _) = load.iter().enumerate().min_by_key(|&(r, &l)| (l, r)).unwrap_or((0, &0));
        load[least] += n;
        if least == rank {
            owned.insert(id);
        }
    }
    owned
}

/// The gradients of the owned parameters only: AdamW then steps (and keeps state for) those
/// alone, and leaves every other parameter untouched.
pub(crate) fn keep_owned<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: GradientsParams, owned: &HashSet<ParamId>) -> GradientsParams {
    struct Keep<'a> {
        all: GradientsParams,
        kept: GradientsParams,
        owned: &'a HashSet<ParamId>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Keep<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.owned.contains(&param.id) {
                if let Some(grad) = self.all.remove::<B::InnerBackend, D>(param.id) {
                    self.kept.register::<B::InnerBackend, D>(param.id, grad);
                }
            }
        }
    }
    let mut keep = Keep { all: grads, kept: GradientsParams::new(), owned };
    module.visit(&mut keep);
    keep.kept
}

/// Makes every rank's parameters the stepped values of their owners: each rank contributes its
/// owned parameters' values (and zeros elsewhere) to a sum over the ranks.
pub(crate) fn share_owned<B: AutodiffBackend, M: AutodiffModule<B>>(peer: &Peer, module: M, owned: &HashSet<ParamId>) -> Result<M, TrainError> {
    struct Own<'a> {
        values: GradientsParams,
        owned: &'a HashSet<ParamId>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Own<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            if value.is_require_grad() && self.owned.contains(&param.id) {
                self.values.register::<B::InnerBackend, D>(param.id, value.inner());
            }
        }
    }
    let mut own = Own { values: GradientsParams::new(), owned };
    module.visit(&mut own);
    // The gradient sum takes every trainable parameter in visiting order, zeros where a rank has
    // none: exactly the "owned values, zeros elsewhere" sum.
    let summed = peer.sum_parameters(&module, own.values)?;
    Ok(module.map(&mut Replace { values: summed }))
}

/// Puts the summed values in place of the parameters' values (same ids, still trainable).
struct Replace {
    values: GradientsParams,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Replace {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.values.remove::<B::InnerBackend, D>(id) {
            // The sum ran in f32; a bf16 parameter's values (`master.rs`) round back exactly.
            Some(value) if tensor.is_require_grad() => Tensor::from_inner(value.cast(tensor.dtype())).require_grad(),
            _ => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_net::{net, values, Net, AD};
    use super::*;
    use burn::optim::{AdamWConfig, Optimizer};

    fn grads(m: &Net<AD>) -> GradientsParams {
        let x = Tensor::<AD, 2>::from_floats([[0.5, -1.0]], &Default::default());
        let first = m.layers[2].forward(x);
        let mut h = first.clone().sum() + first.powf_scalar(2.0).sum();
        for layer in [&m.layers[0], &m.layers[1], &m.layers[3], &m.layers[4]] {
            let [inputs, _] = layer.weight.val().dims();
            h = h + layer.forward(Tensor::<AD, 2>::ones([1, inputs], &Default::default())).powf_scalar(2.0).sum();
        }
        GradientsParams::from_grads(h.backward(), m)
    }

    #[test]
    fn packed_shards_unpack_and_a_cut_buffer_is_an_error() {
        let shards = vec![vec![1u8, 2, 3], Vec::new(), vec![9u8; 20]];
        let packed = pack(&shards);
        assert_eq!(unpack(&packed).unwrap(), shards);
        assert!(unpack(&packed[..packed.len() - 1]).is_err());
        assert!(unpack(&packed[..5]).is_err());
    }

    #[test]
    fn every_parameter_has_one_owner_and_the_shards_are_balanced() {
        let m = net();
        let all = values(&m);
        for world in [1, 2, 3] {
            let shards: Vec<_> = (0..world).map(|r| owned_params(&m, world, r)).collect();
            for p in &all {
                assert_eq!(shards.iter().filter(|s| s.contains(&p.id)).count(), 1, "world {world}");
            }
            let load: Vec<usize> = shards.iter().map(|s| all.iter().filter(|p| s.contains(&p.id)).map(|p| p.values.len()).sum()).collect();
            let largest = all.iter().map(|p| p.values.len()).max().unwrap();
            assert!(load.iter().max().unwrap() - load.iter().min().unwrap() <= largest, "world {world}: {load:?}");
        }
    }

    /// Two ranks each stepping their own parameters, combined, give one unsharded step bit for bit;
    /// each rank's AdamW keeps state for its own parameters only and leaves the others untouched.
    #[test]
    fn owned_steps_combine_into_the_unsharded_step() {
        let m = net();
        let config = AdamWConfig::new().with_weight_decay(0.1);
        let mut whole = config.init::<AD, Net<AD>>();
        let full = values(&whole.step(1e-2, m.clone(), grads(&m)));
        for rank in 0..2 {
            let owned = owned_params(&m, 2, rank);
            let mut optim = config.init::<AD, Net<AD>>();
            let stepped = optim.step(1e-2, m.clone(), keep_owned(&m, grads(&m), &owned));
            assert_eq!(optim.to_record().len(), owned.len());
            for (after, (want, before)) in values(&stepped).iter().zip(full.iter().zip(values(&m))) {
                if owned.contains(&after.id) {
                    assert_eq!(after.values, want.values, "an owned parameter steps as in the unsharded step");
                } else {
                    assert_eq!(after.values, before.values, "a parameter of another rank is left as it was");
                }
            }
        }
    }
}

//! ZeRO-1 with a sharded f32 master: a bf16 LLM trained in full under `optim.zero_stage = 1`
//! keeps its f32 master weights sharded like the AdamW state, as DeepSpeed's stage 1 does.
//!
//! Unsharded, such an LLM is stored in f32 (the master copy AdamW steps) and cast to bf16 for each
//! forward (`Llava::llm_compute`). Every rank then holds the whole f32 copy, and the bf16 cast of
//! it during the step. Sharded, each rank holds the LLM in bf16 (the values those casts give), and
//! f32 masters only for the parameters it owns (`zero.rs`). A step is the unsharded step bit for
//! bit:
//! - the forward uses the same bf16 values;
//! - the backward gives each bf16 parameter the bf16 gradient that the unsharded graph's cast
//!   receives, and that cast's backward only converts it to f32. Here it is converted when a
//!   second micro-batch's is added to it ([`add_gradients`]), or else by the sum across the ranks,
//!   which builds its buckets in f32, one bucket at a time (`parallel.rs`);
//! - the gradients are summed and clipped in f32 as before, each rank keeping the sums of its own
//!   parameters only (the norm is summed from the ranks' shares, bit for bit the same); each owner
//!   steps its f32 masters with AdamW (same ids, shapes and dtype, so the optimizer state and its
//!   shard files are the same);
//! - the new bf16 values are the masters' casts, and reach the other ranks through the same exact
//!   sum as any ZeRO-1 parameter.
//!
//! Checkpoints: node 0 gathers every rank's masters ([`checkpoint_part`], beside the optimizer
//! shards) and writes the f32 LLM into `trainable.bin` ([`Masters::assemble`]), as an unsharded
//! run does. The checkpoint is the same either way, and a resumed run loads the f32 LLM and shards
//! it again ([`Masters::split`]). Node 0 holds every rank's masters in host memory meanwhile (4
//! bytes per LLM parameter), and the assembled f32 LLM on its first device.
//!
//! Memory of a 7B LLM (6.7e9 parameters) per rank of `N`, before activations: f32 weights, f32
//! gradients, their bf16 cast and `1/N` of the moments make 27 + 27 + 13.5 + 54/N GB unsharded,
//! against 13.5 (bf16 weights) + 13.5 (the backward's bf16 gradients) + 108/N (masters, moments
//! and the owned gradient sums) here when a rank runs one micro-batch a step (LLaVA's recipes): 74
//! against 40.5 GB at N = 8. With several micro-batches a step the accumulated gradients are f32:
//! 13.5 + 27 + 13.5 (the micro-batch's bf16 gradients being added) + 81/N, 64 GB at N = 8. Counted
//! from the tensors' sizes, not measured on a GPU.

use std::collections::{HashMap, HashSet};

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};

use super::parallel::ParallelError;
use super::zero::{pack, param_ids, unpack};
use crate::TrainError;

/// This rank's f32 masters of the parameters it owns among those the model holds in a lower
/// precision.
pub(crate) struct Masters {
    /// f32 values by parameter id (a typed store: `GradientsParams` keeps each tensor's rank).
    values: GradientsParams,
    /// The parameters with a master here.
    mastered: HashSet<ParamId>,
    /// Every parameter the model holds in `compute` instead of f32 (each with a master on one rank
    /// when it trains).
    lowered: HashSet<ParamId>,
    compute: FloatDType,
    /// Elements of the masters held here.
    elements: usize,
}

impl Masters {
    /// Lowers the `lowered` parameters of `module` (stored in f32) to `compute`, keeping the f32
    /// values of those this rank `owned` as its masters; ids and trainability are kept.
    pub(crate) fn split<B: AutodiffBackend, M: AutodiffModule<B>>(module: M, lowered: HashSet<ParamId>, owned: &HashSet<ParamId>, compute: FloatDType) -> (M, Self) {
        struct Split<'a> {
            masters: Masters,
            owned: &'a HashSet<ParamId>,
        }
        impl<B: AutodiffBackend> ModuleMapper<B> for Split<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let (id, tensor, mapper) = param.consume();
                if !self.masters.lowered.contains(&id) {
                    return Param::from_mapped_value(id, tensor, mapper);
                }
                let trains = tensor.is_require_grad();
                let value = tensor.inner();
                if trains && self.owned.contains(&id) {
                    self.masters.elements += value.shape().num_elements();
                    self.masters.mastered.insert(id);
                    self.masters.values.register::<B::InnerBackend, D>(id, value.clone());
                }
                Param::from_mapped_value(id, lift(value.cast(self.masters.compute), trains), mapper)
            }
        }
        let masters = Masters { values: GradientsParams::new(), mastered: HashSet::new(), lowered, compute, elements: 0 };
        let mut split = Split { masters, owned };
        let module = module.map(&mut split);
        (module, split.masters)
    }

    /// Elements of the f32 masters this rank holds.
    pub(crate) fn elements(&self) -> usize {
        self.elements
    }

    /// One optimizer step of the owned parameters on their f32 masters (`grads`: f32, owned
    /// parameters only): the masters take the stepped values, the module their casts.
    pub(crate) fn step<B: AutodiffBackend, M: AutodiffModule<B>, O: Optimizer<M, B>>(&mut self, optim: &mut O, lr: f64, module: M, grads: GradientsParams) -> M {
        struct In<'a>(&'a mut Masters);
        impl<B: AutodiffBackend> ModuleMapper<B> for In<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let (id, tensor, mapper) = param.consume();
                let tensor = match self.0.values.remove::<B::InnerBackend, D>(id) {
                    Some(master) => lift(master, true),
                    None => tensor,
                };
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
        struct Out<'a>(&'a mut Masters);
        impl<B: AutodiffBackend> ModuleMapper<B> for Out<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let (id, tensor, mapper) = param.consume();
                if !self.0.mastered.contains(&id) {
                    return Param::from_mapped_value(id, tensor, mapper);
                }
                let master = tensor.inner();
                self.0.values.register::<B::InnerBackend, D>(id, master.clone());
                Param::from_mapped_value(id, lift(master.cast(self.0.compute), true), mapper)
            }
        }
        let with_masters = module.map(&mut In(self));
        optim.step(lr, with_masters, grads).map(&mut Out(self))
    }

    /// The masters as bytes for node 0 (checkpoints): per master, its position in `module`'s
    /// visiting order (u64), its element count (u64), then its f32 values, all little-endian.
    pub(crate) fn to_bytes<B: AutodiffBackend, M: AutodiffModule<B>>(&self, module: &M) -> Result<Vec<u8>, String> {
        struct Write<'a> {
            masters: &'a Masters,
            position: u64,
            out: Vec<u8>,
            error: Option<String>,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Write<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let position = self.position;
                self.position += 1;
                let Some(master) = self.masters.values.get::<B::InnerBackend, D>(param.id) else { return };
                match master.into_data().to_vec::<f32>() {
                    Ok(values) => {
                        self.out.extend_from_slice(&position.to_le_bytes());
                        self.out.extend_from_slice(&(values.len() as u64).to_le_bytes());
                        self.out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
                    }
                    Err(e) => {
                        self.error.get_or_insert(format!("the f32 master of parameter {position}: {e:?}"));
                    }
                }
            }
        }
        let mut write = Write { masters: self, position: 0, out: Vec::with_capacity(self.elements * 4), error: None };
        module.visit(&mut write);
        write.error.map_or(Ok(write.out), Err)
    }

    /// `module` (this rank's, its lowered parameters in `compute`) with every lowered parameter
    /// back in f32: the masters of `ranks` (every rank's [`Self::to_bytes`]) where one exists, the
    /// exact cast of the lower-precision value elsewhere (parameters that do not train). An error
    /// names what does not fit: a master of a parameter the module does not have, one of another
    /// size, two masters of one parameter, or a trained parameter with none.
    pub(crate) fn assemble<B: AutodiffBackend, M: AutodiffModule<B>>(&self, module: M, ranks: &[&[u8]]) -> Result<M, String> {
        let ids = param_ids(&module);
        let mut values: HashMap<ParamId, (u64, Vec<f32>)> = HashMap::new();
        for (rank, mut bytes) in ranks.iter().copied().enumerate() {
            while !bytes.is_empty() {
                let (head, rest) = bytes.split_at_checked(16).ok_or_else(|| format!("rank {rank}'s masters: a header cut short"))?;
                let position = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
                let n = u64::from_le_bytes(head[8..].try_into().unwrap_or_default()) as usize;
                let (data, rest) = rest.split_at_checked(n * 4).ok_or_else(|| format!("rank {rank}'s master of parameter {position}: {n} values cut short"))?;
                let id = *ids.get(position as usize).ok_or_else(|| format!("rank {rank}'s master of parameter {position}, of a module with {}", ids.len()))?;
                let floats = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                if values.insert(id, (position, floats)).is_some() {
                    return Err(format!("two ranks sent a master of parameter {position}"));
                }
                bytes = rest;
            }
        }
        struct Assemble<'a> {
            lowered: &'a HashSet<ParamId>,
            values: HashMap<ParamId, (u64, Vec<f32>)>,
            position: u64,
            error: Option<String>,
        }
        impl<B: AutodiffBackend> ModuleMapper<B> for Assemble<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
                let position = self.position;
                self.position += 1;
                let (id, tensor, mapper) = param.consume();
                if !self.lowered.contains(&id) {
                    return Param::from_mapped_value(id, tensor, mapper);
                }
                let trains = tensor.is_require_grad();
                let value = tensor.inner();
                let master = match self.values.remove(&id) {
                    Some((_, floats)) if floats.len() == value.shape().num_elements() => {
                        Tensor::from_data(TensorData::new(floats, value.shape()), &value.device())
                    }
                    Some((_, floats)) => {
                        self.error.get_or_insert(format!("the master of parameter {position} has {} values, the parameter {}", floats.len(), value.shape().num_elements()));
                        value.cast(DType::F32)
                    }
                    None if trains => {
                        self.error.get_or_insert(format!("no rank sent the master of trained parameter {position}"));
                        value.cast(DType::F32)
                    }
                    None => value.cast(DType::F32),
                };
                Param::from_mapped_value(id, lift(master, trains), mapper)
            }
        }
        let mut assemble = Assemble { lowered: &self.lowered, values, position: 0, error: None };
        let module = module.map(&mut assemble);
        if let Some((_, (position, _))) = assemble.values.iter().next() {
            assemble.error.get_or_insert(format!("a master of parameter {position}, which the model holds in f32"));
        }
        assemble.error.map_or(Ok(module), Err)
    }
}

/// A rank's part of a ZeRO-1 checkpoint: its optimizer shard, and its masters (of `module`) beside
/// it when it has them, [`pack`]ed.
pub(crate) fn checkpoint_part<B: AutodiffBackend, M: AutodiffModule<B>>(optim: Vec<u8>, masters: Option<&Masters>, module: &M) -> Result<Vec<u8>, TrainError> {
    match masters {
        Some(masters) => Ok(pack(&[optim, masters.to_bytes(module).map_err(|message| ParallelError::Masters { message })?])),
        None => Ok(optim),
    }
}

/// A [`checkpoint_part`] with masters, apart again: (optimizer shard, masters).
pub(crate) fn split_checkpoint_part(rank: usize, part: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), TrainError> {
    let parts = unpack(&part).map_err(|message| ParallelError::Masters { message: format!("rank {rank}'s checkpoint part: {message}") })?;
    match <[Vec<u8>; 2]>::try_from(parts) {
        Ok([optim, masters]) => Ok((optim, masters)),
        Err(parts) => {
            let message = format!("rank {rank} sent {} parts, expected its optimizer shard and its masters", parts.len());
            Err(ParallelError::Masters { message }.into())
        }
    }
}

/// `new` added to `acc` parameter by parameter without rounding: a parameter's first gradient is
/// kept as it comes (a bf16 one stays bf16, half the bytes of its f32 conversion; the sum across
/// the ranks converts it bucket by bucket, and [`gradients_to_f32`] without one), and a second
/// turns the sum into f32, each converted as it is added, so the step never holds the converted
/// copy of the whole model beside the sum. The f32 values are those of the unsharded graph's
/// casts: bf16 to f32 is exact.
pub(crate) fn add_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, acc: &mut GradientsParams, new: GradientsParams) {
    struct Add<'a> {
        acc: &'a mut GradientsParams,
        new: GradientsParams,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let Some(grad) = self.new.remove::<B::InnerBackend, D>(param.id) else { return };
            let sum = match self.acc.remove::<B::InnerBackend, D>(param.id) {
                Some(acc) => acc.cast(DType::F32).add(grad.cast(DType::F32)),
                None => grad,
            };
            self.acc.register::<B::InnerBackend, D>(param.id, sum);
        }
    }
    module.visit(&mut Add { acc, new });
}

/// Every gradient in f32, converted one parameter at a time (a step without a sum across ranks).
pub(crate) fn gradients_to_f32<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: GradientsParams) -> GradientsParams {
    struct ToF32(GradientsParams);
    impl<B: AutodiffBackend> ModuleVisitor<B> for ToF32 {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            // (An f32 gradient's cast is the tensor itself.)
            if let Some(grad) = self.0.remove::<B::InnerBackend, D>(param.id) {
                self.0.register::<B::InnerBackend, D>(param.id, grad.cast(DType::F32));
            }
        }
    }
    let mut to = ToF32(grads);
    module.visit(&mut to);
    to.0
}

/// An inner tensor as a parameter's value, trainable when it was.
fn lift<B: AutodiffBackend, const D: usize>(value: Tensor<B::InnerBackend, D>, trains: bool) -> Tensor<B, D> {
    let tensor = Tensor::from_inner(value);
    if trains {
        tensor.require_grad()
    } else {
        tensor
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_net::{net, values, Net, AD};
    use super::super::zero::{keep_owned, owned_params};
    use super::*;
    use burn::backend::Flex;
    use burn::module::Module;
    use burn::optim::AdamWConfig;

    /// A loss of `m` computed in bf16 (each layer on ones, squared and summed).
    fn loss(m: &Net<AD>) -> Tensor<AD, 1> {
        let device = Default::default();
        let mut total: Option<Tensor<AD, 1>> = None;
        for layer in &m.layers {
            let [inputs, _] = layer.weight.dims();
            let x = Tensor::<AD, 2>::ones([1, inputs], &device).mul_scalar(0.5).cast(DType::BF16);
            let y = layer.forward(x).powf_scalar(2.0).sum();
            total = Some(match total {
                Some(t) => t + y,
                None => y,
            });
        }
        total.unwrap()
    }

    /// The unsharded f32 master's gradients: the loss of its bf16 cast, as `Llava::forward_loss` takes it.
    fn master_grads(m: &Net<AD>) -> GradientsParams {
        struct Cast;
        impl ModuleMapper<AD> for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<AD, D>>) -> Param<Tensor<AD, D>> {
                param.map(|t| t.cast(DType::BF16))
            }
        }
        GradientsParams::from_grads(loss(&m.clone().map(&mut Cast)).backward(), m)
    }

    fn bf16(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| burn::tensor::bf16::from_f32(x).to_f32()).collect()
    }

    /// Rank `rank` of two: the net split, after one step; its masters.
    fn sharded_step(m: &Net<AD>, rank: usize) -> (Net<AD>, Masters) {
        let lowered: HashSet<ParamId> = param_ids(m).into_iter().collect();
        let owned = owned_params(m, 2, rank);
        let (low, mut masters) = Masters::split(m.clone(), lowered, &owned, FloatDType::BF16);
        let mut grads = GradientsParams::new();
        add_gradients(&low, &mut grads, GradientsParams::from_grads(loss(&low).backward(), &low));
        let grads = gradients_to_f32(&low, grads);
        let mut optim = AdamWConfig::new().with_weight_decay(0.1).init::<AD, Net<AD>>();
        let stepped = masters.step(&mut optim, 1e-2, low.clone(), keep_owned(&low, grads, &owned));
        assert_eq!(optim.to_record().len(), owned.len(), "AdamW keeps state for the owned parameters only");
        (stepped, masters)
    }

    #[test]
    fn sharded_masters_step_like_the_whole_f32_master_and_assemble_into_it() {
        let m = net();
        let before = values(&m);
        let whole = AdamWConfig::new().with_weight_decay(0.1).init::<AD, Net<AD>>().step(1e-2, m.clone(), master_grads(&m));
        let want = values(&whole);
        let total: usize = before.iter().map(|p| p.values.len()).sum();

        let ranks: Vec<(Net<AD>, Masters)> = (0..2).map(|r| sharded_step(&m, r)).collect();
        for (rank, (stepped, masters)) in ranks.iter().enumerate() {
            let owned = owned_params(&m, 2, rank);
            assert!(masters.elements() * 10 < total * 7 && masters.elements() * 10 > total * 3, "rank {rank}: {} of {total}", masters.elements());
            for (after, (stepped_f32, was)) in values(stepped).iter().zip(want.iter().zip(&before)) {
                assert_eq!((after.dtype, after.trains), (DType::BF16, true), "the module holds every parameter in bf16, still trainable");
                if owned.contains(&after.id) {
                    assert_eq!(after.values, bf16(&stepped_f32.values), "an owned parameter is the cast of the whole master's step");
                } else {
                    assert_eq!(after.values, bf16(&was.values), "another rank's parameter is left as it was");
                }
            }
        }

        // Node 0 gathers both ranks' masters: the f32 net of the whole step, bit for bit.
        let bytes: Vec<Vec<u8>> = ranks.iter().map(|(stepped, masters)| masters.to_bytes(stepped).unwrap()).collect();
        let (first, masters) = &ranks[0];
        let assembled = masters.assemble(first.clone(), &[&bytes[0], &bytes[1]]).unwrap();
        assert_eq!(values(&assembled), want);

        // What does not fit is named, not papered over.
        let err = masters.assemble(first.clone(), &[&bytes[0]]).err().unwrap();
        assert!(err.contains("no rank sent the master of trained parameter"), "{err}");
        let err = masters.assemble(first.clone(), &[&bytes[0], &bytes[0], &bytes[1]]).err().unwrap();
        assert!(err.contains("two ranks sent a master of parameter"), "{err}");
        let err = masters.assemble(first.clone(), &[&bytes[0], &bytes[1][..bytes[1].len() - 2]]).err().unwrap();
        assert!(err.contains("rank 1") && err.contains("cut short"), "{err}");
    }

    #[test]
    fn bf16_gradients_accumulate_in_f32_as_the_master_cast_gives_them() {
        let m = net();
        let lowered: HashSet<ParamId> = param_ids(&m).into_iter().collect();
        let (low, _) = Masters::split(m.clone(), lowered, &HashSet::new(), FloatDType::BF16);
        let mut acc = GradientsParams::new();
        for _ in 0..2 {
            add_gradients(&low, &mut acc, GradientsParams::from_grads(loss(&low).backward(), &low));
        }
        // Two micro-batches of the same samples: twice the f32 gradient of the master's cast, exactly.
        struct Compare<'a> {
            acc: &'a GradientsParams,
            whole: &'a GradientsParams,
            checked: usize,
        }
        impl ModuleVisitor<AD> for Compare<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AD, D>>) {
                let acc = self.acc.get::<Flex, D>(p.id).expect("an accumulated gradient");
                let whole = self.whole.get::<Flex, D>(p.id).expect("the master's gradient");
                assert_eq!((acc.dtype(), whole.dtype()), (DType::F32, DType::F32));
                assert_eq!(acc.into_data().to_vec::<f32>().unwrap(), (whole.clone() + whole).into_data().to_vec::<f32>().unwrap());
                self.checked += 1;
            }
        }
        let whole = master_grads(&m);
        let mut compare = Compare { acc: &acc, whole: &whole, checked: 0 };
        m.visit(&mut compare);
        assert_eq!(compare.checked, 10);
    }
}

//! The parameter visitor and its three walkers: load, export, list.

use std::collections::BTreeSet;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::{join, Naming};
use crate::error::{ConnectorError, Result};
use crate::tensor_file::TensorFile;

/// Visits one parameter under its canonical key. `transpose`: the upstream layout is the transpose
/// of burn's (2-D `nn.Linear` weights: PyTorch `[out, in]`, burn `[in, out]`).
pub trait WeightIo<B: Backend> {
    fn tensor<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<B, D>>, transpose: bool) -> Result<()>;

    /// A parameter upstream keeps but never uses in the forward (AcFormer's `latents`): loading
    /// accepts any leading size and tolerates its absence; export writes it.
    fn unused_tensor(&mut self, key: &str, param: &mut Param<Tensor<B, 2>>) -> Result<()> {
        self.tensor(key, param, false)
    }
}

/// `nn.Linear`: `weight` (transposed), `bias`.
pub fn linear<B: Backend, I: WeightIo<B>>(io: &mut I, key: &str, m: &mut Linear<B>) -> Result<()> {
    io.tensor(&join(key, "weight"), &mut m.weight, true)?;
    if let Some(b) = m.bias.as_mut() {
        io.tensor(&join(key, "bias"), b, false)?;
    }
    Ok(())
}

/// `nn.LayerNorm`: `weight` is burn's gamma, `bias` its beta.
pub fn layer_norm<B: Backend, I: WeightIo<B>>(io: &mut I, key: &str, m: &mut LayerNorm<B>) -> Result<()> {
    io.tensor(&join(key, "weight"), &mut m.gamma, false)?;
    if let Some(b) = m.beta.as_mut() {
        io.tensor(&join(key, "bias"), b, false)?;
    }
    Ok(())
}

/// `nn.Conv2d`: same layout in both (`[out, in/groups, kh, kw]`).
pub fn conv2d<B: Backend, I: WeightIo<B>>(io: &mut I, key: &str, m: &mut Conv2d<B>) -> Result<()> {
    io.tensor(&join(key, "weight"), &mut m.weight, false)?;
    if let Some(b) = m.bias.as_mut() {
        io.tensor(&join(key, "bias"), b, false)?;
    }
    Ok(())
}

fn upstream_shape(dims: &[usize], transpose: bool) -> Vec<usize> {
    let mut v = dims.to_vec();
    if transpose {
        v.reverse();
    }
    v
}

/// Fills parameters from a file; records which keys it used.
pub struct Loader<'a, B: Backend> {
    file: &'a TensorFile,
    naming: Naming,
    device: B::Device,
    used: BTreeSet<String>,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub fn new(file: &'a TensorFile, naming: Naming, device: &B::Device) -> Self {
        Self { file, naming, device: device.clone(), used: BTreeSet::new() }
    }

    /// Refuses keys in the naming's namespace that no parameter took (PyTorch's strict loading).
    pub fn finish(self) -> Result<()> {
        let extra: Vec<String> =
            self.file.tensors.keys().filter(|k| self.naming.owns(k) && !self.used.contains(*k)).cloned().collect();
        if extra.is_empty() {
            Ok(())
        } else {
            Err(ConnectorError::UnexpectedKeys { file: self.file.path.clone(), keys: extra })
        }
    }
}

impl<B: Backend> WeightIo<B> for Loader<'_, B> {
    fn tensor<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<B, D>>, transpose: bool) -> Result<()> {
        let file_key = self.naming.key(key);
        let expected = upstream_shape(param.lazy_shape().as_slice(), transpose);
        let Some(data) = self.file.tensors.get(&file_key) else {
            return Err(ConnectorError::MissingKey {
                file: self.file.path.clone(),
                key: file_key,
                expected,
                hint: format!(" ({})", self.naming.describe()),
            });
        };
        let found = data.shape.to_vec();
        let mut data = data.clone().convert::<f32>();
        if found != expected {
            // Honeybee checkpoints may carry a 577-long pos_emb whose CLS row is dropped on load
            // (kakaobrain/honeybee honeybee/projectors/projectors.py l.105–112).
            let pos_emb_with_cls = key.ends_with("pos_emb")
                && D == 3
                && found.len() == 3
                && found[0] == expected[0]
                && found[1] == expected[1] + 1
                && found[2] == expected[2];
            if !pos_emb_with_cls {
                return Err(ConnectorError::WrongShape { file: self.file.path.clone(), key: file_key, expected, found });
            }
            let t = Tensor::<B, 3>::from_data(data, &self.device).narrow(1, 1, expected[1]);
            data = t.into_data();
        }
        let mut t = Tensor::<B, D>::from_data(data, &self.device);
        if transpose {
            t = t.transpose();
        }
        // Replace without initialising the old value (a lazy random init of every parameter would
        // cost seconds at 84M parameters); loaded connector weights are trainable.
        *param = Param::initialized(param.id, t.require_grad());
        self.used.insert(file_key);
        Ok(())
    }

    fn unused_tensor(&mut self, key: &str, param: &mut Param<Tensor<B, 2>>) -> Result<()> {
        self.load_unused(key, param)
    }
}

impl<B: Backend> Loader<'_, B> {
    fn load_unused(&mut self, key: &str, param: &mut Param<Tensor<B, 2>>) -> Result<()> {
        let file_key = self.naming.key(key);
        let [_, width] = param.lazy_shape().dims::<2>();
        match self.file.tensors.get(&file_key) {
            None => {
                tracing::warn!(key = %file_key, "unused parameter absent from the weights; keeping its initial value");
                Ok(())
            }
            Some(data) if data.shape.len() == 2 && data.shape[1] == width => {
                let t = Tensor::<B, 2>::from_data(data.clone().convert::<f32>(), &self.device);
                *param = Param::initialized(param.id, t.require_grad());
                self.used.insert(file_key);
                Ok(())
            }
            Some(data) => Err(ConnectorError::WrongShape {
                file: self.file.path.clone(),
                key: file_key,
                expected: vec![0, width],
                found: data.shape.to_vec(),
            }),
        }
    }
}

/// Collects parameters in upstream layout under file keys.
pub struct Exporter {
    naming: Naming,
    pub tensors: Vec<(String, TensorData)>,
}

impl Exporter {
    pub fn new(naming: Naming) -> Self {
        Self { naming, tensors: Vec::new() }
    }
}

impl<B: Backend> WeightIo<B> for Exporter {
    fn tensor<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<B, D>>, transpose: bool) -> Result<()> {
        let mut t = param.val();
        if transpose {
            t = t.transpose();
        }
        self.tensors.push((self.naming.key(key), t.into_data().convert::<f32>()));
        Ok(())
    }
}

/// Lists canonical keys and their upstream shapes without touching values.
#[derive(Default)]
pub struct KeyLister {
    pub keys: Vec<(String, Vec<usize>)>,
}

impl<B: Backend> WeightIo<B> for KeyLister {
    fn tensor<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<B, D>>, transpose: bool) -> Result<()> {
        self.keys.push((key.to_string(), upstream_shape(param.lazy_shape().as_slice(), transpose)));
        Ok(())
    }
}

//! One hook type for every policy, built from a [`CompressionPolicy`].

use anchorage_llm::{AttentionRows, HookError, LayerHooks, LayerRequest, SeqLayout};
use burn::prelude::*;

use crate::act::ActHooks;
use crate::config::CompressionPolicy;
use crate::error::CompressError;
use crate::prune::PruneHooks;
use crate::trace::Trace;

/// The hooks of a policy; [`Compressor::None`] is inactive (the plain forward). FastV and HiMAP
/// are both [`Compressor::Prune`] (one and two prune stages).
#[derive(Debug, Clone)]
pub enum Compressor {
    None,
    Act(ActHooks),
    Prune(PruneHooks),
}

impl CompressionPolicy {
    /// Fresh hooks for one forward or one generation on a decoder with `num_layers` layers.
    pub fn hooks(&self, num_layers: usize) -> Result<Compressor, CompressError> {
        Ok(match self {
            Self::None => Compressor::None,
            Self::Act(c) => Compressor::Act(ActHooks::new(c.clone(), num_layers)?),
            Self::FastV(c) => Compressor::Prune(c.hooks(num_layers)?),
            Self::Himap(c) => Compressor::Prune(c.hooks(num_layers)?),
        })
    }
}

impl Compressor {
    /// What the last forward did (`None` for no compression).
    pub fn trace(&self) -> Option<&Trace> {
        match self {
            Self::None => None,
            Self::Act(h) => Some(&h.trace),
            Self::Prune(h) => Some(&h.trace),
        }
    }

    fn inner<B: Backend>(&mut self) -> Option<&mut dyn LayerHooks<B>> {
        match self {
            Self::None => None,
            Self::Act(h) => Some(h),
            Self::Prune(h) => Some(h),
        }
    }
}

impl<B: Backend> LayerHooks<B> for Compressor {
    fn active(&self) -> bool {
        !matches!(self, Self::None)
    }

    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        self.inner::<B>().map_or_else(|| Ok(LayerRequest::default()), |h| h.before_layer(layer, layout))
    }

    fn attention_rows(&mut self, layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) -> Result<(), HookError> {
        match self.inner::<B>() {
            Some(h) => h.attention_rows(layer, layout, rows),
            None => Ok(()),
        }
    }

    fn after_layer(&mut self, layer: usize, layout: &SeqLayout, hidden: &Tensor<B, 3>) -> Result<Option<Vec<Vec<usize>>>, HookError> {
        match self.inner::<B>() {
            Some(h) => h.after_layer(layer, layout, hidden),
            None => Ok(None),
        }
    }
}

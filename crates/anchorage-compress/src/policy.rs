//! One hook type for every policy, built from a [`CompressionPolicy`].

use anchorage_llm::{AttentionRows, LayerHooks, LayerRequest, SeqLayout};
use burn::prelude::*;

use crate::act::ActHooks;
use crate::config::CompressionPolicy;
use crate::error::CompressError;
use crate::fastv::FastVHooks;
use crate::himap::HimapHooks;
use crate::trace::Trace;

/// The hooks of a policy; [`Compressor::None`] is inactive (the plain forward).
#[derive(Debug, Clone)]
pub enum Compressor {
    None,
    Act(ActHooks),
    FastV(FastVHooks),
    Himap(HimapHooks),
}

impl CompressionPolicy {
    /// Fresh hooks for one forward or one generation on a decoder with `num_layers` layers.
    pub fn hooks(&self, num_layers: usize) -> Result<Compressor, CompressError> {
        Ok(match self {
            Self::None => Compressor::None,
            Self::Act(c) => Compressor::Act(ActHooks::new(c.clone(), num_layers)?),
            Self::FastV(c) => Compressor::FastV(FastVHooks::new(c.clone(), num_layers)?),
            Self::Himap(c) => Compressor::Himap(HimapHooks::new(c.clone(), num_layers)?),
        })
    }
}

impl Compressor {
    /// What the last forward did (empty for `None`).
    pub fn trace(&self) -> Option<&Trace> {
        match self {
            Self::None => None,
            Self::Act(h) => Some(&h.trace),
            Self::FastV(h) => Some(&h.trace),
            Self::Himap(h) => Some(&h.trace),
        }
    }

    /// Takes the first error a hook met; callers check it after the forward.
    pub fn take_error(&mut self) -> Option<CompressError> {
        match self {
            Self::None => None,
            Self::Act(h) => h.error.take(),
            Self::FastV(h) => h.error.take(),
            Self::Himap(h) => h.error.take(),
        }
    }

    fn inner<B: Backend>(&mut self) -> Option<&mut dyn LayerHooks<B>> {
        match self {
            Self::None => None,
            Self::Act(h) => Some(h),
            Self::FastV(h) => Some(h),
            Self::Himap(h) => Some(h),
        }
    }
}

impl<B: Backend> LayerHooks<B> for Compressor {
    fn active(&self) -> bool {
        !matches!(self, Self::None)
    }

    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> LayerRequest {
        self.inner::<B>().map_or_else(LayerRequest::default, |h| h.before_layer(layer, layout))
    }

    fn attention_rows(&mut self, layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) {
        if let Some(h) = self.inner::<B>() {
            h.attention_rows(layer, layout, rows);
        }
    }

    fn after_layer(&mut self, layer: usize, layout: &SeqLayout, hidden: &Tensor<B, 3>) -> Option<Vec<Vec<usize>>> {
        self.inner::<B>().and_then(|h| h.after_layer(layer, layout, hidden))
    }
}

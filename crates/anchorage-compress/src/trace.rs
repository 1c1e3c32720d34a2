//! What a policy did in one forward: per layer and sample, how many tokens were queries and how
//! many keys/values they attended to, and which original image tokens each selection kept. The
//! FLOPs model (`flops.rs`) turns the token counts into cost.

/// Token counts of one layer for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerTokens {
    /// Tokens that run through the layer (queries, FFN rows).
    pub queries: usize,
    /// Keys/values the queries attend to.
    pub keys: usize,
}

/// One selection: at `layer` (the layer whose attention scored it), per sample, the original
/// indices of the image tokens kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub layer: usize,
    pub kept_images: Vec<Vec<usize>>,
}

/// A forward's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// `layers[l][b]`, in the order layers ran.
    pub layers: Vec<Vec<LayerTokens>>,
    pub selections: Vec<Selection>,
}

impl Trace {
    /// Records a layer about to run.
    pub fn layer(&mut self, layer: usize, tokens: Vec<LayerTokens>) {
        if self.layers.len() <= layer {
            self.layers.resize(layer + 1, Vec::new());
        }
        self.layers[layer] = tokens;
    }
}

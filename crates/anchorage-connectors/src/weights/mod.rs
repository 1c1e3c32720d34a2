//! Weights under upstream key names, both ways, through one visitor.
//!
//! Every connector module walks its parameters with [`WeightIo`] under *canonical* keys: the names
//! of the upstream module tree relative to the connector (LLaVA's `nn.Sequential` indices `0`, `2`;
//! AcFormer's `0.layers.{i}.0.to_q`, `1`, `3`; Honeybee's `net.0.b1.conv1.conv`, `readout.0`). A
//! [`Naming`] spells a canonical key as it appears in a file (`model.mm_projector.0.weight`,
//! `multi_modal_projector.linear_1.weight`, `connector.0.weight`, ...). [`Loader`] fills the
//! parameters from a file and refuses missing keys, wrong shapes and unexpected keys; [`Exporter`]
//! collects them in PyTorch layout (`nn.Linear` weights `[out, in]`).

mod io;
mod naming;

pub use io::{conv2d, layer_norm, linear, Exporter, KeyLister, Loader, WeightIo};
pub use naming::Naming;

/// `prefix.name`, or `name` when the prefix is empty.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

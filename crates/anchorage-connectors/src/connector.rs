//! One type for "a connector chosen by the recipe": [`ConnectorConfig`] (serde-tagged by `kind`)
//! builds a [`Connector`], whose `forward` takes the vision features and, for the Anchor Former,
//! the CLS attention row.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::anchor_former::{AnchorFormer, AnchorFormerConfig};
use crate::c_abstractor::{CAbstractor, CAbstractorConfig};
use crate::error::{ConnectorError, Result};
use crate::mlp::{Mlp, MlpConfig};
use crate::perceiver::PerceiverConfig;
use crate::resampler::{Resampler, ResamplerConfig};
use crate::tensor_file::TensorFile;
use crate::weights::{Exporter, KeyLister, Loader, Naming, WeightIo};

/// Initialises every parameter in place (see [`Connector::export`]).
struct ForceInit;

impl<B: Backend> burn::module::ModuleVisitor<B> for ForceInit {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// The largest connector [`ConnectorConfig::init`] builds: the published ones have at most a few
/// hundred million parameters; sizes past this are a typo that would end in an allocation abort.
pub const MAX_PARAMETERS: f64 = 1e9;

/// Which connector, with its sizes. Serialised (JSON) into the `anchorage` format's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConnectorConfig {
    #[serde(deserialize_with = "crate::mlp::deserialize_config")]
    Mlp(MlpConfig),
    CAbstractor(CAbstractorConfig),
    Resampler(ResamplerConfig),
    AnchorFormer(AnchorFormerConfig),
}

/// A built connector.
#[derive(Module, Debug)]
pub enum Connector<B: Backend> {
    Mlp(Mlp<B>),
    CAbstractor(CAbstractor<B>),
    Resampler(Resampler<B>),
    AnchorFormer(AnchorFormer<B>),
}

impl ConnectorConfig {
    /// The recipe's name for the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mlp(_) => "mlp",
            Self::CAbstractor(_) => "c_abstractor",
            Self::Resampler(_) => "resampler",
            Self::AnchorFormer(_) => "anchor_former",
        }
    }

    /// An upper estimate of the parameter count from the sizes alone (f64, so absurd sizes do not
    /// overflow), checked before anything is allocated.
    pub fn parameter_estimate(&self) -> f64 {
        let f = |n: usize| n as f64;
        let mlp = |d_in: usize, d_out: usize, depth: usize| f(d_in) * f(d_out) + f(depth) * f(d_out) * f(d_out) + f(depth + 1) * f(d_out);
        let perceiver = |p: &PerceiverConfig| {
            let inner = f(p.heads) * f(p.dim_head);
            let d = f(p.d_model);
            f(p.num_latents) * d + f(p.depth) * (4.0 * d * inner + 2.0 * f(p.ff_mult) * d * d + 8.0 * d)
        };
        match self {
            Self::Mlp(c) => mlp(c.d_input, c.d_output, c.depth),
            Self::CAbstractor(c) => {
                let h = f(c.hidden_size);
                // RegNet bottleneck blocks (3×3 convolutions, squeeze-excite) in two stages.
                f(c.num_input_tokens) * f(c.d_input) + f(c.d_input) * h + 2.0 * f(c.depth + 1) * 12.0 * h * h + mlp(c.hidden_size, c.d_output, c.mlp_depth)
            }
            Self::Resampler(c) => perceiver(&c.perceiver) + mlp(c.perceiver.d_model, c.d_output, c.projector_depth),
            Self::AnchorFormer(c) => perceiver(&c.perceiver) + f(c.anchors) * f(c.perceiver.d_model) + mlp(c.perceiver.d_model, c.d_output, c.projector_depth),
        }
    }

    /// Input (vision) and output (LLM) widths.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Self::Mlp(c) => (c.d_input, c.d_output),
            Self::CAbstractor(c) => (c.d_input, c.d_output),
            Self::Resampler(c) => (c.perceiver.d_model, c.d_output),
            Self::AnchorFormer(c) => (c.perceiver.d_model, c.d_output),
        }
    }

    /// The same connector with another output (LLM) width.
    pub fn with_d_output(self, d: usize) -> Self {
        match self {
            Self::Mlp(c) => Self::Mlp(MlpConfig { d_output: d, ..c }),
            Self::CAbstractor(c) => Self::CAbstractor(CAbstractorConfig { d_output: d, ..c }),
            Self::Resampler(c) => Self::Resampler(ResamplerConfig { d_output: d, ..c }),
            Self::AnchorFormer(c) => Self::AnchorFormer(AnchorFormerConfig { d_output: d, ..c }),
        }
    }

    /// Reads the output (LLM) width from a weights file: the first dimension of the last linear
    /// layer (`nn.Linear` weight `[out, in]`, or its bias) under the spelling the file uses. For
    /// an MLP whose last layer is absent (`linear` weights for an `mlp1x_gelu` recipe, a dropped
    /// key) the first layer, `[d_output, d_input]` wherever it sits, tells the width, so that the
    /// load then names the missing key with its true shape.
    pub fn probe_d_output<B: Backend>(&self, file: &TensorFile, device: &B::Device) -> Result<usize> {
        let mut probe = self.init::<B>(device)?;
        let naming = probe.detect_naming(file, &self.namings()).unwrap_or(Naming::prefix(""));
        let keys = probe.canonical_keys();
        let (last, expected) = keys
            .iter()
            .rev()
            .find(|(k, shape)| (k == "weight" || k.ends_with(".weight")) && shape.len() == 2)
            .cloned()
            .unwrap_or_default();
        let key = naming.key(&last);
        let bias = naming.key(&format!("{}bias", last.strip_suffix("weight").unwrap_or_default()));
        let d_input = self.dims().0;
        let first_layer = || {
            // BTreeMap order: `0.weight` before `2.weight`.
            file.tensors.iter().find(|(k, t)| k.ends_with("weight") && t.shape.len() == 2 && t.shape[1] == d_input).map(|(_, t)| t.shape[0])
        };
        match (file.tensors.get(&key), file.tensors.get(&bias)) {
            (Some(t), _) if t.shape.len() == 2 => Ok(t.shape[0]),
            (Some(t), _) => Err(ConnectorError::WrongShape { file: file.path.clone(), key, expected, found: t.shape.to_vec() }),
            (None, Some(b)) if b.shape.len() == 1 => Ok(b.shape[0]),
            (None, _) => match first_layer().filter(|_| matches!(self, Self::Mlp(_))) {
                Some(d) => Ok(d),
                None => Err(ConnectorError::MissingKey {
                    file: file.path.clone(),
                    key,
                    expected: expected.iter().enumerate().map(|(i, d)| if i == 0 { 0 } else { *d }).collect(),
                    hint: format!(
                        " ({}; 0 stands for the output width, which no tensor in the file tells; keys present: {:?})",
                        naming.describe(),
                        file.tensors.keys().take(8).collect::<Vec<_>>()
                    ),
                }),
            },
        }
    }

    /// Tokens handed to the LLM per image, given the vision tokens the connector receives.
    pub fn output_tokens(&self, vision_tokens: usize) -> usize {
        match self {
            Self::Mlp(_) => vision_tokens,
            Self::CAbstractor(c) => c.num_queries,
            Self::Resampler(c) => c.perceiver.num_latents,
            Self::AnchorFormer(c) => c.anchors,
        }
    }

    /// Whether `forward` needs the CLS attention row.
    pub fn needs_cls_attention(&self) -> bool {
        matches!(self, Self::AnchorFormer(_))
    }

    /// Sizes whose [`Self::parameter_estimate`] passes [`MAX_PARAMETERS`] are refused before
    /// anything is allocated: `(key, message)`.
    pub fn check_size(&self) -> std::result::Result<(), (String, String)> {
        let estimate = self.parameter_estimate();
        if estimate > MAX_PARAMETERS {
            let message = format!(
                "these sizes ask for about {:.1e} parameters ({:.0} GiB in f32), more than the {MAX_PARAMETERS:.0e} a connector may have; check the widths, depths and token counts",
                estimate,
                estimate * 4.0 / f64::from(1u32 << 30)
            );
            return Err(("connector".into(), message));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Connector<B>> {
        self.check_size().map_err(|(key, message)| ConnectorError::Config { key, message })?;
        Ok(match self {
            Self::Mlp(c) => Connector::Mlp(c.init(device)),
            Self::CAbstractor(c) => Connector::CAbstractor(c.init(device)?),
            Self::Resampler(c) => {
                if c.projector_depth == 0 && c.d_output != c.perceiver.d_model {
                    return Err(ConnectorError::Config {
                        key: "projector_depth".into(),
                        message: format!(
                            "0 (no projector) keeps the vision width {}, but the output width is {}",
                            c.perceiver.d_model, c.d_output
                        ),
                    });
                }
                Connector::Resampler(c.init(device))
            }
            Self::AnchorFormer(c) => {
                if c.anchors < 2 {
                    return Err(ConnectorError::Config { key: "anchors".into(), message: format!("{} must be at least 2", c.anchors) });
                }
                Connector::AnchorFormer(c.init(device))
            }
        })
    }

    /// The spellings a weights file may use for this kind, most specific first.
    pub fn namings(&self) -> Vec<Naming> {
        let mut v = vec![Naming::prefix("connector."), Naming::prefix("model.mm_projector."), Naming::prefix("mm_projector.")];
        match self {
            Self::Mlp(_) => v.push(Naming::HfLlava),
            Self::CAbstractor(_) => v.push(Naming::prefix("abstractor.")),
            Self::Resampler(c) if c.projector_depth == 0 => v.push(Naming::OpenFlamingo),
            _ => {}
        }
        v.push(Naming::prefix(""));
        v
    }
}

impl<B: Backend> Connector<B> {
    /// # Shapes
    /// `features [batch, tokens, d_vision]`, `cls_attention Option<[batch, heads, tokens]>`
    /// (Anchor Former only; CLS at token 0) `-> [batch, queries, d_llm]`
    pub fn forward(&self, features: Tensor<B, 3>, cls_attention: Option<Tensor<B, 3>>) -> Result<Tensor<B, 3>> {
        let (d_in, _) = self.dims();
        if features.dims()[2] != d_in || features.dims().contains(&0) {
            return Err(ConnectorError::InputShape {
                what: "connector features".into(),
                expected: format!("[batch, tokens, {d_in}] with batch and tokens at least 1"),
                found: features.dims().to_vec(),
            });
        }
        match self {
            Self::Mlp(m) => Ok(m.forward(features)),
            Self::CAbstractor(m) => m.forward(features),
            Self::Resampler(m) => m.forward(features),
            Self::AnchorFormer(m) => {
                let att = cls_attention.ok_or_else(|| ConnectorError::InputShape {
                    what: "cls_attention".into(),
                    expected: "[batch, heads, tokens] (the Anchor Former needs the CLS attention row)".into(),
                    found: vec![],
                })?;
                m.forward(features, att)
            }
        }
    }

    /// Input (vision) and output (LLM) widths.
    pub fn dims(&self) -> (usize, usize) {
        let first_last = |m: &Mlp<B>| {
            let f = m.layers.first().map(|l| l.weight.lazy_shape().dims::<2>()).unwrap_or([0, 0]);
            let l = m.layers.last().map(|l| l.weight.lazy_shape().dims::<2>()).unwrap_or([0, 0]);
            (f[0], l[1])
        };
        match self {
            Self::Mlp(m) => first_last(m),
            Self::CAbstractor(m) => {
                let d_in = match (&m.pos_emb, &m.s1) {
                    (Some(p), _) => p.lazy_shape().dims::<3>()[2],
                    (None, Some(s)) => s.blocks.first().map(|b| b.conv1.conv.weight.lazy_shape().dims::<4>()[1]).unwrap_or(0),
                    (None, None) => first_last(&m.readout).0,
                };
                (d_in, first_last(&m.readout).1)
            }
            Self::Resampler(m) => {
                // Without a projector (open_flamingo) the output width is the vision width.
                let d = m.perceiver.latents.lazy_shape().dims::<2>()[1];
                (d, if m.projector.layers.is_empty() { d } else { first_last(&m.projector).1 })
            }
            Self::AnchorFormer(m) => (m.perceiver.latents.lazy_shape().dims::<2>()[1], first_last(&m.projector).1),
        }
    }

    /// Tokens handed to the LLM per image, given the vision tokens the connector receives.
    pub fn output_tokens(&self, vision_tokens: usize) -> usize {
        match self {
            Self::Mlp(_) => vision_tokens,
            Self::CAbstractor(m) => m.num_queries,
            Self::Resampler(m) => m.perceiver.latents.lazy_shape().dims::<2>()[0],
            Self::AnchorFormer(m) => m.anchors,
        }
    }

    /// Trainable parameters (including the Anchor Former's unused `latents`, as upstream counts them).
    pub fn parameter_count(&self) -> usize {
        self.num_params()
    }

    /// Walks the weights under canonical keys.
    pub fn visit_weights<I: WeightIo<B>>(&mut self, io: &mut I) -> Result<()> {
        match self {
            // LLaVA's `linear` is a bare nn.Linear (`mm_projector.weight`), not a Sequential.
            Self::Mlp(m) if m.is_bare_linear() => crate::weights::linear(io, "", &mut m.layers[0]),
            Self::Mlp(m) => m.visit_weights("", 0, io),
            Self::CAbstractor(m) => m.visit_weights("", io),
            Self::Resampler(m) => m.visit_weights("", io),
            Self::AnchorFormer(m) => m.visit_weights("", io),
        }
    }

    /// Canonical keys and their upstream (PyTorch-layout) shapes.
    pub fn canonical_keys(&mut self) -> Vec<(String, Vec<usize>)> {
        let mut lister = KeyLister::default();
        // KeyLister never fails.
        let _ = self.visit_weights(&mut lister);
        lister.keys
    }

    /// The spelling among `candidates` that matches most of this connector's keys in `file`.
    pub fn detect_naming(&mut self, file: &TensorFile, candidates: &[Naming]) -> Option<Naming> {
        let keys = self.canonical_keys();
        candidates
            .iter()
            .map(|n| (keys.iter().filter(|(k, _)| file.tensors.contains_key(&n.key(k))).count(), n))
            .filter(|(hits, _)| *hits > 0)
            .fold(None::<(usize, &Naming)>, |best, cur| match best {
                Some(b) if b.0 >= cur.0 => Some(b),
                _ => Some(cur),
            })
            .map(|(_, n)| n.clone())
    }

    /// LLaVA's two one-layer projectors differ only in their keys: say which one `file` holds
    /// when it is the other.
    fn layout_hint(&self, file: &TensorFile) -> &'static str {
        let Self::Mlp(m) = self else { return "" };
        let has = |suffix: &str| file.tensors.keys().any(|k| k == suffix || k.ends_with(&format!(".{suffix}")));
        match (m.layers.len(), m.is_bare_linear()) {
            (1, true) if has("0.weight") => {
                "; the file holds a one-layer nn.Sequential (`0.weight`): LLaVA's `mlp1x_gelu`, not `linear`"
            }
            (1, false) if has("weight") && !has("0.weight") => {
                "; the file holds a bare nn.Linear (`weight`): LLaVA's `linear`, not `mlp1x_gelu`"
            }
            _ => "",
        }
    }

    /// Loads every parameter from `file` under `naming` (strict: missing keys, wrong shapes and
    /// unexpected keys in the naming's namespace are refused).
    pub fn load_with(mut self, file: &TensorFile, naming: Naming, device: &B::Device) -> Result<Self> {
        let mut loader = Loader::new(file, naming, device);
        self.visit_weights(&mut loader)?;
        loader.finish()?;
        Ok(self)
    }

    /// Loads from `file`, detecting its spelling among `candidates` (see [`ConnectorConfig::namings`]).
    pub fn load(mut self, file: &TensorFile, candidates: &[Naming], device: &B::Device) -> Result<Self> {
        let naming = match self.detect_naming(file, candidates) {
            Some(n) => n,
            None => {
                let keys = self.canonical_keys();
                let first = candidates.first().cloned().unwrap_or(Naming::prefix(""));
                let (key, expected) = keys.first().cloned().unwrap_or_default();
                return Err(ConnectorError::MissingKey {
                    file: file.path.clone(),
                    key: first.key(&key),
                    expected,
                    hint: format!(
                        " (no key of this connector under any known spelling: {}; keys present: {:?}){}",
                        candidates.iter().map(|n| n.describe()).collect::<Vec<_>>().join(", "),
                        file.tensors.keys().take(8).collect::<Vec<_>>(),
                        self.layout_hint(file)
                    ),
                });
            }
        };
        tracing::debug!(naming = %naming.describe(), "loading connector weights");
        self.load_with(file, naming, device)
    }

    /// The weights in PyTorch layout under `naming`.
    pub fn export(&self, naming: Naming) -> Result<Vec<(String, TensorData)>> {
        // Parameters initialise lazily, and a clone of a not-yet-initialised parameter draws its
        // own random values: initialise them in place first so the export is this module's.
        self.visit(&mut ForceInit);
        let mut exporter = Exporter::new(naming);
        self.clone().visit_weights(&mut exporter)?;
        Ok(exporter.tensors)
    }
}

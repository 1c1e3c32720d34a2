//! [`ClipVisionConfig`]: the architecture of a CLIP vision tower, with named presets. The tower
//! is built by `ClipVisionConfig::init`, which lives beside the model (model.rs) so that the
//! config knows nothing of the module.

use burn::config::Config;
use serde::{Deserialize, Serialize};

/// The MLP activation of the encoder layers (`hidden_act` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// `x * sigmoid(1.702 x)`: what OpenAI's CLIP checkpoints (and LLaVA's tower) use.
    QuickGelu,
    /// Exact (erf) GELU.
    Gelu,
    /// tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

/// Architecture of a CLIP vision tower (transformers' `CLIPVisionConfig`, the fields that shape it).
///
/// Built from a checkpoint's `config.json` by [`crate::read_config`], or from a preset.
#[derive(Config, Debug, PartialEq)]
pub struct ClipVisionConfig {
    /// Side of the square input image, in pixels (`image_size`).
    pub image_size: usize,
    /// Side of a square patch, in pixels (`patch_size`): the patch conv's kernel and stride.
    pub patch_size: usize,
    /// Width of the residual stream (`hidden_size`).
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer (`intermediate_size`).
    pub intermediate_size: usize,
    /// Number of encoder layers (`num_hidden_layers`).
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`num_attention_heads`); must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Input channels (`num_channels`).
    #[config(default = 3)]
    pub num_channels: usize,
    /// Epsilon of every LayerNorm (`layer_norm_eps`).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// MLP activation (`hidden_act`).
    #[config(default = "HiddenAct::QuickGelu")]
    pub hidden_act: HiddenAct,
}

impl ClipVisionConfig {
    /// `openai/clip-vit-large-patch14-336`, LLaVA-1.5's tower: 336 px, patch 14 (577 tokens),
    /// width 1024, 24 layers, 16 heads, MLP 4096, quick_gelu.
    pub fn vit_l14_336() -> Self {
        Self::new(336, 14, 1024, 4096, 24, 16)
    }

    /// The embedded default's tower (recipes/tiny, `builtin = "tiny"`): 32 px, patch 4 (an 8x8
    /// grid, 65 tokens with CLS), width 64, 4 layers, 4 heads of 16, MLP 256, quick_gelu. Small
    /// enough to train connectors on a CPU in minutes, large enough that 4 heads can each pick
    /// distinct anchors among 64 patches.
    pub fn tiny() -> Self {
        Self::new(32, 4, 64, 256, 4, 4)
    }

    /// Patches per side (`image_size / patch_size`).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patch tokens (`grid²`).
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Tokens per image, CLS included (`num_patches + 1`): the `T` of every `[B, T, D]`.
    pub fn num_tokens(&self) -> usize {
        self.num_patches() + 1
    }

    /// Tokens per image, CLS included, for a `height × width` input run with interpolated
    /// position embeddings: `(height/P)·(width/P) + 1` (check the size with
    /// [`Self::check_input_size`]).
    pub fn num_tokens_at(&self, height: usize, width: usize) -> usize {
        (height / self.patch_size.max(1)) * (width / self.patch_size.max(1)) + 1
    }

    /// Why a `height × width` input cannot run with interpolated position embeddings, if it
    /// cannot: both sides must be positive multiples of the patch size. (transformers floors
    /// `height // patch_size` and lets the patch conv drop the remainder; anchorage refuses it.)
    pub fn check_input_size(&self, height: usize, width: usize) -> Result<(), String> {
        check_input_size(height, width, self.patch_size, self.grid())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Why this config cannot build a tower, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.patch_size == 0 || self.image_size < self.patch_size {
            return Err(format!(
                "patch_size {} must be between 1 and image_size {}",
                self.patch_size, self.image_size
            ));
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_hidden_layers == 0 {
            return Err("num_hidden_layers must be at least 1".to_string());
        }
        Ok(())
    }
}

/// [`ClipVisionConfig::check_input_size`] for a tower with patch size `patch` and a `grid × grid`
/// position table.
pub(crate) fn check_input_size(
    height: usize,
    width: usize,
    patch: usize,
    grid: usize,
) -> Result<(), String> {
    if height == 0 || width == 0 || patch == 0 || height % patch != 0 || width % patch != 0 {
        let side = height.max(width) / patch.max(1);
        return Err(format!(
            "input size {height}x{width} is not a positive multiple of the patch size {patch} \
             (the tower interpolates its {grid}x{grid} position grid to \
             (height/{patch})x(width/{patch}) patches; try {lo} or {hi})",
            lo = side.max(1) * patch,
            hi = (side + 1) * patch,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_documented_token_counts() {
        let l = ClipVisionConfig::vit_l14_336();
        assert_eq!(l.num_tokens(), 577);
        assert_eq!(l.head_dim(), 64);
        assert!(l.check().is_ok());
        let t = ClipVisionConfig::tiny();
        assert_eq!(t.num_tokens(), 65);
        assert_eq!(t.head_dim(), 16);
        assert!(t.check().is_ok());
    }

    #[test]
    fn input_sizes_must_be_multiples_of_the_patch() {
        let l = ClipVisionConfig::vit_l14_336();
        assert!(l.check_input_size(672, 672).is_ok());
        assert!(l.check_input_size(1008, 672).is_ok());
        assert_eq!(l.num_tokens_at(672, 672), 48 * 48 + 1);
        assert_eq!(l.num_tokens_at(1008, 672), 72 * 48 + 1);
        let e = l.check_input_size(701, 701).unwrap_err();
        assert!(e.contains("701x701") && e.contains("patch size 14"), "{e}");
        assert!(e.contains("try 700 or 714"), "{e}");
        assert!(l.check_input_size(672, 673).is_err());
        assert!(l.check_input_size(0, 14).is_err());
    }

    #[test]
    fn check_rejects_heads_that_do_not_divide_the_width() {
        let c = ClipVisionConfig::new(32, 8, 30, 60, 2, 4);
        assert!(c.check().unwrap_err().contains("multiple"));
    }
}

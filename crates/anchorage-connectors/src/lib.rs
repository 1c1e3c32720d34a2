//! Vision-language connectors: LLaVA's MLP, Honeybee's C-Abstractor, the Perceiver Resampler and
//! AcFormer's Anchor Former, with export and import under upstream key names.

//! The frozen CLIP vision tower (`CLIPVisionModel`): hidden states up to a select layer and, on
//! request, the per-head CLS-row attention probabilities of a layer.

//! `train inspect ...`: each subcommand runs the same library code as training on given inputs.

mod anchors;
mod connector;
mod image;
mod llava;
mod llm;
mod prune;
mod recipe;
mod tokens;
mod vision;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// AcFormer's anchor selection on a CLS attention row [B,H,T]; write `indices` [B,N+1] i64
    /// (safetensors), and with --image/--png draw the anchors coloured by head.
    Anchors(anchors::AnchorsArgs),
    /// Run a connector (a recipe `[connector]` table) with upstream-named weights on `features`
    /// [B,T,D] (+ `cls_attention`); write `output` [B,Q,D_out] (safetensors).
    Connector(connector::ConnectorArgs),
    /// LLaVA's image preprocessing on one file (decode, convert RGB, pad, CLIP resize/crop/normalise);
    /// write `pixel_values` [1, 3, S, S] f32 (safetensors).
    Image(image::ImageArgs),
    /// Check a recipe and print it resolved, with the training plan derived from it.
    Recipe(recipe::RecipeArgs),
    /// LLaVA records -> input_ids and labels (templates plain / vicuna_v1 / chatml), one JSON line
    /// per sample, as LLaVA's preprocessing returns them before image splicing.
    Tokens(tokens::TokensArgs),
    /// Run a Hugging Face LLaVA / LLaVA-NeXT folder on one image and token ids (one -200); write
    /// pixel_values, image_features, inputs_embeds and logits as transformers computes them.
    Llava(llava::LlavaArgs),
    /// Run a decoder LLM on token ids; write logits, hidden states and greedy tokens (safetensors).
    Llm(llm::LlmArgs),
    /// Apply a visual-token pruning rule (FastV last-token, HiMAP text-to-image / image-to-image) to
    /// an attention map [1, H, L, L]; write the kept positions `keep` [L'] i64 (safetensors).
    Prune(prune::PruneArgs),
    /// Run a CLIP vision tower on one image; write pixel values, hidden states, CLS attention rows
    /// and LLaVA features (safetensors).
    Vision(vision::VisionArgs),
}

pub fn run(cmd: InspectCommand) -> anyhow::Result<()> {
    match cmd {
        InspectCommand::Anchors(args) => anchors::run(args),
        InspectCommand::Connector(args) => connector::run(args),
        InspectCommand::Image(args) => image::run(args),
        InspectCommand::Recipe(args) => recipe::run(args),
        InspectCommand::Tokens(args) => tokens::run(args),
        InspectCommand::Llava(args) => llava::run(args),
        InspectCommand::Llm(args) => llm::run(args),
        InspectCommand::Prune(args) => prune::run(args),
        InspectCommand::Vision(args) => vision::run(args),
    }
}

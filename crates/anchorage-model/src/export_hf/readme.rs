//! The README.md written into an exported folder: what it holds and how to load it.

use anchorage_data::text::question_prompt;
use anchorage_data::{Aspect, Template};
use burn::tensor::backend::Backend;

use crate::run_dir::RunModel;

fn provenance<B: Backend>(run: &RunModel<B>, merged_lora: bool) -> String {
    let mut s = format!(
        "Exported by `train export --format hf-llava-full` (anchorage {}) from `{}`.\n",
        env!("CARGO_PKG_VERSION"),
        run.checkpoint.display()
    );
    if merged_lora {
        s.push_str("The run trained LoRA adapters; they are merged into the base weights (`W + alpha/r · B·A`, PEFT's `merge_and_unload`).\n");
    }
    s
}

/// How a prompt is written under the run's template (the text `<image>` marks the image).
fn prompt_section(template: Template, chat_template: bool) -> String {
    let example = question_prompt(template, "What is in the picture?", true);
    if !chat_template {
        return format!("## Prompts\n\nThe run trained with the `{}` template; build prompts as LLaVA does, e.g.\n\n```text\n{example}\n```\n", template.name());
    }
    format!(
        "## Prompts\n\nThe run trained with the `{}` template. `chat_template.jinja` writes it: `processor.apply_chat_template([{{\"role\": \"user\", \"content\": [{{\"type\": \"image\"}}, {{\"type\": \"text\", \"text\": question}}]}}], add_generation_prompt=True)` gives, for example,\n\n```text\n{example}\n```\n",
        template.name()
    )
}

fn aspect_note(aspect: Aspect) -> &'static str {
    match aspect {
        Aspect::Pad => "Images are padded to a square with the CLIP mean colour before resizing (LLaVA's `expand2square`, `image_aspect_ratio pad`): `LlavaImageProcessor` with `do_pad: true` does the same.",
        Aspect::Square => "Images are resized on the shortest edge and centre cropped (LLaVA's default `image_aspect_ratio`).",
        // Refused before any file is written (`export_hf_llava_full`).
        Aspect::AnyRes => "Images are tiled as LLaVA-NeXT's AnyRes does.",
    }
}

/// README of a `LlavaForConditionalGeneration` folder.
pub(crate) fn llava<B: Backend>(
    run: &RunModel<B>,
    image_token_id: u32,
    appended: usize,
    merged_lora: bool,
) -> String {
    let rows = if appended > 0 {
        format!("The tokenizer had no free id below the LLM's {} embedding rows, so `<image>` (id {image_token_id}) got {appended} appended row(s) in `embed_tokens` and `lm_head`, zero in both (llava-hf did the same, 32000 -> 32064); `generation_config.json` suppresses it. Compare logits with anchorage's on the first {} columns.\n", run.built.model.llm().config.vocab_size, run.built.model.llm().config.vocab_size)
    } else {
        format!("`<image>` is token {image_token_id}, inside the LLM's vocabulary.\n")
    };
    format!(
        "# LLaVA checkpoint (transformers)\n\n{}\nA `LlavaForConditionalGeneration` with its processor and tokenizer:\n\n```python\nfrom transformers import AutoProcessor, LlavaForConditionalGeneration\nmodel = LlavaForConditionalGeneration.from_pretrained(DIR)\nprocessor = AutoProcessor.from_pretrained(DIR)\ninputs = processor(images=image, text=prompt, return_tensors=\"pt\")\nlogits = model(**inputs).logits\n```\n\n{rows}\n## Images\n\n{}\n\n{}\n## Differences from anchorage\n\n- anchorage tokenises a prompt chunk by chunk around `<image>` (LLaVA's `tokenizer_image_token`); `LlavaProcessor` tokenises the whole text with `<image>` as a special token. The ids can differ right after the image; pass anchorage's ids (with the image token expanded to `image_seq_length` copies) for identical logits.\n- Weights are float32; evaluation-time compression (`[compression]`) is not part of the checkpoint.\n",
        provenance(run, merged_lora),
        aspect_note(run.card.aspect),
        prompt_section(run.card.template, true),
    )
}

/// README of the `llm/` + `vision_tower/` + `connector.safetensors` layout.
pub(crate) fn beside<B: Backend>(run: &RunModel<B>, reason: &str, merged_lora: bool) -> String {
    let model = &run.built.model;
    format!(
        "# LLaVA-style model: LLM, vision tower and connector\n\n{}\nThis run is not one `LlavaForConditionalGeneration`: {reason}. The folder holds\n\n- `llm/`: the language model, a `{}` folder (config, weights, tokenizer) that transformers loads alone;\n- `vision_tower/`: the CLIP vision tower, a `CLIPVisionModel` folder;\n- `connector.safetensors`: the `{}` connector under the original authors' key names (the `llava` export format; its `config` metadata holds the connector's configuration as JSON).\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer, CLIPVisionModel\nfrom safetensors.torch import load_file\nllm = AutoModelForCausalLM.from_pretrained(DIR + \"/llm\")\ntokenizer = AutoTokenizer.from_pretrained(DIR + \"/llm\")\nvision = CLIPVisionModel.from_pretrained(DIR + \"/vision_tower\")\nconnector = load_file(DIR + \"/connector.safetensors\")  # into the authors' module (LLaVA mm_projector, AcFormer, Honeybee)\n```\n\nThe image features are `vision(pixel_values, output_hidden_states=True).hidden_states[{}]`, {} , passed through the connector; the resulting {} tokens replace the `<image>` placeholder in the prompt's embeddings (LLaVA's `prepare_inputs_labels_for_multimodal`), and the LLM runs on the embeddings (`inputs_embeds`).\n\n## Images\n\n{}\n\n{}",
        provenance(run, merged_lora),
        if model.llm().config.family == anchorage_llm::LlmFamily::Qwen2 { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" },
        model.connector_config.kind(),
        model.select.layer,
        match model.select.feature {
            anchorage_vision::FeatureSelect::Patch => "without the CLS token",
            anchorage_vision::FeatureSelect::ClsPatch => "CLS token included",
        },
        model.image_tokens,
        aspect_note(run.card.aspect),
        prompt_section(run.card.template, false),
    )
}

//! A question as LLaVA's evaluation scripts prompt it (llava/eval/model_vqa_loader.py,
//! `model_vqa.py`): `<image>\n` before the question when there is an image, the conversation
//! template's user turn, an open assistant turn, then `tokenizer_image_token`.

use super::labels::CHATML_SYSTEM;
use super::prompt::{vicuna_v1_prompt, IMAGE_TAG};
use super::TextTokenizer;
use crate::{DataError, Template};

/// The prompt text for `question` under `template` (`conv.get_prompt()` with the question as the
/// user message and an empty assistant message).
pub fn question_prompt(template: Template, question: &str, with_image: bool) -> String {
    let qs = if with_image { format!("{IMAGE_TAG}\n{question}") } else { question.to_string() };
    match template {
        // conv_llava_plain: no system, separator "\n" after the user message, nothing for the
        // empty assistant message.
        Template::Plain => format!("{qs}\n"),
        Template::VicunaV1 => vicuna_v1_prompt(&[("USER", &qs), ("ASSISTANT", "")]),
        Template::Chatml => format!("<|im_start|>system\n{CHATML_SYSTEM}<|im_end|>\n<|im_start|>user\n{qs}<|im_end|>\n<|im_start|>assistant\n"),
    }
}

/// The prompt's token ids with `-200` where the image goes, as the template's training path
/// tokenises (`tokenizer_image_token` with special tokens; ChatML without).
pub fn question_ids(tokenizer: &TextTokenizer, template: Template, question: &str, with_image: bool) -> Result<Vec<i64>, DataError> {
    let prompt = question_prompt(template, question, with_image);
    match template {
        Template::Chatml => tokenizer.image_token_plain(&prompt),
        Template::Plain | Template::VicunaV1 => tokenizer.image_token(&prompt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::prompt::VICUNA_SYSTEM;

    #[test]
    fn prompts_follow_the_conversation_templates() {
        assert_eq!(question_prompt(Template::Plain, "What is it?", true), "<image>\nWhat is it?\n");
        assert_eq!(question_prompt(Template::VicunaV1, "What is it?", true), format!("{VICUNA_SYSTEM} USER: <image>\nWhat is it? ASSISTANT:"));
        assert_eq!(question_prompt(Template::VicunaV1, "Hi", false), format!("{VICUNA_SYSTEM} USER: Hi ASSISTANT:"));
        assert!(question_prompt(Template::Chatml, "Q", true).ends_with("<|im_start|>user\n<image>\nQ<|im_end|>\n<|im_start|>assistant\n"));
    }
}

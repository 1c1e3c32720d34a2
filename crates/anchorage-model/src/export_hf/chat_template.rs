//! `chat_template.jinja`: the run's conversation template as a Hugging Face chat template, so
//! `processor.apply_chat_template(messages, add_generation_prompt=True)` writes the prompt the run
//! trained on (`anchorage_data::text::question_prompt`; LLaVA `conversation.py`). Messages hold a
//! string, or a list of `{"type": "image"}` / `{"type": "text", "text": ...}` parts; an image
//! becomes `<image>\n` before the text, as LLaVA places it.

use anchorage_data::text::{question_prompt, VICUNA_SYSTEM};
use anchorage_data::Template;

/// A message's content: the string, or its image tags then its texts.
const CONTENT: &str = "{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}{%- for part in message['content'] if part['type'] == 'image' -%}{{- '<image>\\n' -}}{%- endfor -%}{%- for part in message['content'] if part['type'] == 'text' -%}{{- part['text'] -}}{%- endfor -%}{%- endif -%}";

/// The ChatML system message anchorage's template uses.
fn chatml_system() -> String {
    let p = question_prompt(Template::Chatml, "", false);
    p.split("<|im_start|>system\n")
        .nth(1)
        .and_then(|s| s.split("<|im_end|>").next())
        .unwrap_or_default()
        .to_string()
}

/// Jinja string literal of `s`.
fn lit(s: &str) -> String {
    format!(
        "'{}'",
        s.replace('\\', "\\\\")
            .replace('\'', "\\'")
            .replace('\n', "\\n")
    )
}

/// The chat template of `template`.
pub(crate) fn chat_template(template: Template) -> String {
    match template {
        // conv_vicuna_v1 (sep style TWO): system + " ", "USER: " + m + " ", "ASSISTANT: " + m + "</s>".
        Template::VicunaV1 => format!(
            "{{%- if messages[0]['role'] == 'system' -%}}{{{{- messages[0]['content'] + ' ' -}}}}{{%- else -%}}{{{{- {} + ' ' -}}}}{{%- endif -%}}{{%- for message in messages if message['role'] != 'system' -%}}{{%- if message['role'] == 'user' -%}}{{{{- 'USER: ' -}}}}{CONTENT}{{{{- ' ' -}}}}{{%- else -%}}{{{{- 'ASSISTANT: ' -}}}}{CONTENT}{{{{- '</s>' -}}}}{{%- endif -%}}{{%- endfor -%}}{{%- if add_generation_prompt -%}}{{{{- 'ASSISTANT:' -}}}}{{%- endif -%}}",
            lit(VICUNA_SYSTEM)
        ),
        // conv_llava_plain: the user message and "\n"; the assistant message and "\n".
        Template::Plain => format!("{{%- for message in messages if message['role'] != 'system' -%}}{CONTENT}{{{{- '\\n' -}}}}{{%- endfor -%}}"),
        Template::Chatml => format!(
            "{{%- if messages[0]['role'] != 'system' -%}}{{{{- '<|im_start|>system\\n' + {} + '<|im_end|>\\n' -}}}}{{%- endif -%}}{{%- for message in messages -%}}{{{{- '<|im_start|>' + message['role'] + '\\n' -}}}}{CONTENT}{{{{- '<|im_end|>\\n' -}}}}{{%- endfor -%}}{{%- if add_generation_prompt -%}}{{{{- '<|im_start|>assistant\\n' -}}}}{{%- endif -%}}",
            lit(&chatml_system())
        ),
    }
}

//! Turning a record's turns into a prompt: LLaVA's `<image>` normalisation
//! (llava/train/train.py `preprocess_multimodal`) and the conversation templates
//! (llava/conversation.py `conv_llava_plain`, `conv_vicuna_v1`, `Conversation.get_prompt`).

use super::Turn;

pub const IMAGE_TAG: &str = "<image>";
pub const VICUNA_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// Python's `str.isspace` set: Rust's Unicode `White_Space` plus the ASCII separators
/// U+001C..U+001F, which `str.strip()` also removes.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no arguments.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// `preprocess_multimodal` for v1.5 (no mmtag, no im_start/im_end): each turn that mentions
/// `<image>` loses every occurrence, is stripped, and gets `"<image>\n"` prepended, then is
/// stripped again. Applied only to samples that have an image.
pub fn normalize_image_tags(turns: &mut [Turn]) {
    for t in turns {
        if t.value.contains(IMAGE_TAG) {
            let without = t.value.replace(IMAGE_TAG, "");
            let v = format!("{IMAGE_TAG}\n{}", py_strip(&without));
            t.value = py_strip(&v).to_string();
        }
    }
}

/// `conv_vicuna_v1.get_prompt()` (separator style TWO): `system + " "`, then for each message
/// `role + ": " + message + (" " or "</s>")`, or `role + ":"` for an empty message.
pub fn vicuna_v1_prompt(messages: &[(&str, &str)]) -> String {
    let seps = [" ", "</s>"];
    let mut ret = format!("{VICUNA_SYSTEM}{}", seps[0]);
    for (i, (role, message)) in messages.iter().enumerate() {
        if message.is_empty() {
            ret.push_str(role);
            ret.push(':');
        } else {
            ret.push_str(role);
            ret.push_str(": ");
            ret.push_str(message);
            ret.push_str(seps[i % 2]);
        }
    }
    ret
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(v: &str) -> Turn {
        Turn {
            from: "human".into(),
            value: v.into(),
        }
    }

    #[test]
    fn image_tag_moves_to_the_front() {
        let mut t = vec![turn("Describe this.\n<image>"), turn(" <image> a <image>b "), turn("no tag")];
        normalize_image_tags(&mut t);
        assert_eq!(t[0].value, "<image>\nDescribe this.");
        assert_eq!(t[1].value, "<image>\na b");
        assert_eq!(t[2].value, "no tag");
        let mut only = vec![turn("<image>")];
        normalize_image_tags(&mut only);
        assert_eq!(only[0].value, "<image>");
    }

    #[test]
    fn strip_matches_python_whitespace() {
        assert_eq!(py_strip("\u{1c}\u{a0} x \u{3000}\u{1f}"), "x");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x"); // zero-width space is not whitespace
    }

    #[test]
    fn vicuna_prompt_layout() {
        let p = vicuna_v1_prompt(&[("USER", "Hi"), ("ASSISTANT", "Yo"), ("USER", "")]);
        assert_eq!(p, format!("{VICUNA_SYSTEM} USER: Hi ASSISTANT: Yo</s>USER:"));
    }
}

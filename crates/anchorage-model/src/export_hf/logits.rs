//! The logits anchorage computes for one prompt (image encoded, connector, splice, the LLM without
//! compression hooks): what an exported checkpoint must reproduce.

use anchorage_llm::NoHooks;
use burn::tensor::{backend::Backend, Tensor};

use crate::{Llava, ModelError, Prompt};

impl<B: Backend> Llava<B> {
    /// Logits over the spliced prompt (its `-200` placeholder replaced by the image tokens).
    ///
    /// # Shapes
    /// `-> [1, spliced_len, vocab]`
    pub fn prompt_logits(&self, prompt: &Prompt) -> Result<Tensor<B, 3>, ModelError> {
        // Generation's image encoding and splice (AnyRes packing included), then the LLM with no
        // compression hooks whatever the model's policy.
        let spliced = self.splice_prompts(std::slice::from_ref(prompt), 0)?;
        let out = self.llm().forward_embeds(spliced.input, &mut NoHooks)?;
        Ok(self.llm().logits(out.hidden))
    }
}

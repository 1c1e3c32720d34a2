//! The logits anchorage computes for one prompt (image encoded, connector, splice, the LLM without
//! compression hooks): what an exported checkpoint must reproduce.

use anchorage_llm::NoHooks;
use burn::tensor::{backend::Backend, Tensor};

use crate::batch::{stack_images, ImageInput};
use crate::{Llava, ModelError, Prompt, SpliceInput};

impl<B: Backend> Llava<B> {
    /// Logits over the spliced prompt (its `-200` placeholder replaced by the image tokens).
    ///
    /// # Shapes
    /// `-> [1, spliced_len, vocab]`
    pub fn prompt_logits(&self, prompt: &Prompt) -> Result<Tensor<B, 3>, ModelError> {
        let input = [ImageInput {
            input_ids: &prompt.input_ids,
            pixels: prompt.pixels.as_ref(),
        }];
        let (pixels, image_of) = stack_images::<B>(&input, self.image_size, &self.device)?;
        let (features, cls) = self.encode_images(pixels)?;
        let labels = vec![crate::IGNORE_INDEX; prompt.input_ids.len()];
        let batch = [SpliceInput {
            input_ids: &prompt.input_ids,
            labels: &labels,
            images: image_of[0].as_slice(),
        }];
        let spliced = self.splice(&batch, features, cls, usize::MAX, 0)?;
        let out = self.llm().forward_embeds(spliced.input, &mut NoHooks)?;
        Ok(self.llm().logits(out.hidden))
    }
}

//! The conversation template the llava wrapper puts around lmms-eval's context string
//! (eval.md §2). The context (`Sample::prompt`) holds no image token and no template; this adds
//! both through the same [`Template`] that renders the training conversations, so a model is
//! asked exactly the way it was trained.

use crate::data::template::Template;
pub use crate::data::TemplateKind;

/// The image placeholder the MLLM replaces with projected patch features.
pub const IMAGE_TOKEN: &str = crate::data::json::IMAGE_PLACEHOLDER;

/// The full prompt string handed to the model; generation continues right after the assistant
/// role (`ASSISTANT:` for the vicuna templates). With images and a context that holds no
/// `<image>`, one `<image>` per image (space-separated) and a newline go first.
pub fn build_prompt(template: TemplateKind, context: &str, n_images: usize) -> String {
    Template::new(template).generation_prompt(context, n_images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vicuna_v1_exact_string() {
        let p = build_prompt(
            TemplateKind::VicunaV1,
            "Is it overcast?\nAnswer the question using a single word or phrase.",
            1,
        );
        assert_eq!(
            p,
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, \
detailed, and polite answers to the user's questions. USER: <image>\nIs it overcast?\nAnswer the question using a \
single word or phrase. ASSISTANT:"
        );
    }

    /// Without the system prompt the turns keep their separators, as LLaVA's `get_prompt`
    /// renders an empty `system`: the prompt a `vicuna_v1_nosys` model was finetuned on.
    #[test]
    fn vicuna_v1_nosys_drops_only_the_system_text() {
        let p = build_prompt(TemplateKind::VicunaV1NoSystem, "Q", 1);
        assert_eq!(p, " USER: <image>\nQ ASSISTANT:");
    }

    #[test]
    fn image_tokens_once_per_image_and_not_twice() {
        let t = TemplateKind::VicunaV1NoSystem;
        assert_eq!(
            build_prompt(t, "Q", 2),
            " USER: <image> <image>\nQ ASSISTANT:"
        );
        assert_eq!(
            build_prompt(t, "<image>\nQ", 1),
            " USER: <image>\nQ ASSISTANT:"
        );
        assert_eq!(build_prompt(t, "Q", 0), " USER: Q ASSISTANT:");
        // MMMU-style placeholders are not the image token and stay as text.
        assert_eq!(
            build_prompt(t, "see <image 1>", 1),
            " USER: <image>\nsee <image 1> ASSISTANT:"
        );
    }

    /// `plain` renders as LLaVA's PLAIN `get_prompt` does: the user message and its `"\n"`.
    #[test]
    fn plain_is_the_user_message_and_its_separator() {
        assert_eq!(build_prompt(TemplateKind::Plain, "Q", 1), "<image>\nQ\n");
    }
}

//! The conversation template the llava wrapper puts around lmms-eval's context string
//! (eval.md §2). The context (`Sample::prompt`) holds no image token and no template; this adds
//! both, exactly as LLaVA's `conversation.py` renders them.

/// The image placeholder the MLLM replaces with projected patch features.
pub const IMAGE_TOKEN: &str = "<image>";

/// LLaVA's vicuna_v1 system line.
pub const VICUNA_V1_SYSTEM: &str =
    "A chat between a curious user and an artificial intelligence assistant. \
The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// Which chat template wraps the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConversationTemplate {
    /// `vicuna_v1` (LLaVA-1.5, the default of lmms-eval's `--model llava`):
    /// `{system} USER: <image>\n{context} ASSISTANT:`.
    #[default]
    VicunaV1,
    /// Plain: image tokens + context, no chat wrapper (base LLMs, debugging).
    Plain,
}

impl ConversationTemplate {
    /// Parse a template name (`vicuna_v1`, `plain`).
    pub fn from_name(name: &str) -> anyhow::Result<Self> {
        match name {
            "vicuna_v1" => Ok(Self::VicunaV1),
            "plain" => Ok(Self::Plain),
            other => anyhow::bail!(
                "unknown conversation template {other:?}; expected vicuna_v1 or plain"
            ),
        }
    }
}

/// The user turn the llava wrapper builds: when there are images and the context does not already
/// contain `<image>`, one `<image>` per image (space-separated) and a newline go first.
pub fn user_turn(context: &str, n_images: usize) -> String {
    if n_images > 0 && !context.contains(IMAGE_TOKEN) {
        let tokens = vec![IMAGE_TOKEN; n_images].join(" ");
        format!("{tokens}\n{context}")
    } else {
        context.to_string()
    }
}

/// The full prompt string handed to the model; generation continues right after `ASSISTANT:`.
pub fn build_prompt(template: ConversationTemplate, context: &str, n_images: usize) -> String {
    let user = user_turn(context, n_images);
    match template {
        ConversationTemplate::VicunaV1 => format!("{VICUNA_V1_SYSTEM} USER: {user} ASSISTANT:"),
        ConversationTemplate::Plain => user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vicuna_v1_exact_string() {
        let p = build_prompt(
            ConversationTemplate::VicunaV1,
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

    #[test]
    fn image_tokens_once_per_image_and_not_twice() {
        assert_eq!(user_turn("Q", 2), "<image> <image>\nQ");
        assert_eq!(user_turn("<image>\nQ", 1), "<image>\nQ");
        assert_eq!(user_turn("Q", 0), "Q");
        // MMMU-style placeholders are not the image token and stay as text.
        assert_eq!(user_turn("see <image 1>", 1), "<image>\nsee <image 1>");
    }
}

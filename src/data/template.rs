//! Conversation templates, rendered exactly as LLaVA's `llava/conversation.py` renders them
//! (the official Layer_Select_Fuse code carries LLaVA's file unchanged for these templates).
//!
//! * `plain` (`conv_llava_plain`, pretraining): no system text, the image placeholder followed
//!   directly by the caption and the separator `"\n"`. As in LLaVA's `preprocess_plain`, the
//!   human turn is replaced by the bare `<image>`: its instruction text is dropped.
//! * `vicuna_v1` (also `v1`; `conv_vicuna_v1`, finetuning and lmms-eval's default): the system
//!   prompt, then `USER: …` / `ASSISTANT: …` turns, `SeparatorStyle.TWO` with `sep = " "` after a
//!   user turn and `sep2 = "</s>"` after an assistant turn.
//! * `llava_v1` (`conv_llava_v1`): the same as `vicuna_v1` with the "curious human" system prompt.
//! * `vicuna_v1_nosys` (not LLaVA's): `vicuna_v1` with an empty system prompt, rendered as
//!   LLaVA's `get_prompt` renders an empty `system` (`" USER: … ASSISTANT: …</s>"`). For tiny
//!   models the ~35 tokens of system text in front of every sample delay learning to read the
//!   context (experiments/README.md, "What delays the lookup").
//!
//! Rendering for training also returns the byte ranges the model is trained on (the answers and
//! their `</s>`), so the tokeniser can build labels from one tokenisation of the whole text.

use super::json::{Role, Turn, IMAGE_PLACEHOLDER};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;

/// LLaVA's `conv_vicuna_v1.system`.
pub const VICUNA_V1_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";
/// LLaVA's `conv_llava_v1.system`.
pub const LLAVA_V1_SYSTEM: &str = "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.";

/// The templates we render.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// Pretraining: `<image>` + caption + `"\n"`.
    #[serde(alias = "v0_plain")]
    Plain,
    /// Finetuning and eval (LLaVA `--version v1`).
    #[serde(alias = "v1")]
    VicunaV1,
    /// `vicuna_v1` with LLaVA's "curious human" system prompt.
    LlavaV1,
    /// `vicuna_v1` with an empty system prompt (mlvf's own, for tiny models).
    #[serde(rename = "vicuna_v1_nosys")]
    VicunaV1NoSystem,
}

impl TemplateKind {
    /// Names accepted by [`TemplateKind::parse`], as LLaVA's `conv_templates` spells them.
    pub const NAMES: [&'static str; 6] = [
        "plain",
        "v0_plain",
        "v1",
        "vicuna_v1",
        "llava_v1",
        "vicuna_v1_nosys",
    ];

    /// Parses a LLaVA template name (`--version`), e.g. `plain`, `v1`, `vicuna_v1`, `llava_v1`.
    pub fn parse(name: &str) -> Result<TemplateKind, String> {
        match name {
            "plain" | "v0_plain" => Ok(TemplateKind::Plain),
            "v1" | "vicuna_v1" => Ok(TemplateKind::VicunaV1),
            "llava_v1" => Ok(TemplateKind::LlavaV1),
            "vicuna_v1_nosys" => Ok(TemplateKind::VicunaV1NoSystem),
            other => Err(format!(
                "unknown conversation template \"{other}\"; expected one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Plain => "plain",
            TemplateKind::VicunaV1 => "vicuna_v1",
            TemplateKind::LlavaV1 => "llava_v1",
            TemplateKind::VicunaV1NoSystem => "vicuna_v1_nosys",
        }
    }

    pub fn template(self) -> Template {
        Template::new(self)
    }
}

impl std::str::FromStr for TemplateKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TemplateKind::parse(s)
    }
}

impl fmt::Display for TemplateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How turns are joined (LLaVA's `SeparatorStyle`; only the two styles this study uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeparatorStyle {
    /// `system + sep`, then `role + ": " + message + seps[i % 2]`; an empty message renders `role + ":"`.
    Two,
    /// `system`, then `message + seps[i % 2]` with no role names.
    Plain,
}

/// A conversation template: LLaVA's `Conversation` without the message list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub kind: TemplateKind,
    pub system: &'static str,
    /// (user role, assistant role).
    pub roles: [&'static str; 2],
    pub style: SeparatorStyle,
    pub sep: &'static str,
    /// Separator after an assistant turn; `None` (PLAIN) falls back to `sep`. LLaVA's PLAIN
    /// `get_prompt` would render the string "None" there, but no LLaVA path reaches it: training
    /// uses `preprocess_plain`'s own concatenation and a generation prompt leaves the slot empty.
    pub sep2: Option<&'static str>,
}

/// A conversation rendered for training: the text, and the byte ranges of it that are supervised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Sorted, disjoint byte ranges of `text` whose tokens get labels (each answer with its end
    /// separator). A token is supervised when its first byte falls in one of them.
    pub supervised: Vec<Range<usize>>,
}

impl Template {
    pub fn new(kind: TemplateKind) -> Template {
        match kind {
            TemplateKind::Plain => Template {
                kind,
                system: "",
                roles: ["", ""],
                style: SeparatorStyle::Plain,
                sep: "\n",
                sep2: None,
            },
            TemplateKind::VicunaV1 | TemplateKind::LlavaV1 | TemplateKind::VicunaV1NoSystem => {
                Template {
                    kind,
                    system: match kind {
                        TemplateKind::VicunaV1 => VICUNA_V1_SYSTEM,
                        TemplateKind::LlavaV1 => LLAVA_V1_SYSTEM,
                        _ => "",
                    },
                    roles: ["USER", "ASSISTANT"],
                    style: SeparatorStyle::Two,
                    sep: " ",
                    sep2: Some("</s>"),
                }
            }
        }
    }

    /// The end-of-answer separator, the text the model learns to stop with.
    pub fn answer_end(&self) -> &'static str {
        self.sep2.unwrap_or(self.sep)
    }

    /// LLaVA's `Conversation.get_prompt` for `(role index, message)` pairs (`None` = the open
    /// slot a generation fills). Pushes onto `supervised` the byte range of every assistant
    /// message: from the byte after `"ASSISTANT:"` (the space that the answer's first token
    /// carries in Llama's tokeniser) through its `sep2`.
    fn get_prompt(
        &self,
        messages: &[(usize, Option<&str>)],
        mut supervised: Option<&mut Vec<Range<usize>>>,
    ) -> String {
        let seps = [self.sep, self.answer_end()];
        let mut ret = String::with_capacity(
            self.system.len()
                + messages
                    .iter()
                    .map(|(_, m)| m.map_or(16, |m| m.len() + 16))
                    .sum::<usize>(),
        );
        ret.push_str(self.system);
        if self.style == SeparatorStyle::Two {
            ret.push_str(self.sep);
        }
        for (i, (role, message)) in messages.iter().enumerate() {
            let role_name = self.roles[*role];
            match (self.style, message) {
                (SeparatorStyle::Two, Some(msg)) if !msg.is_empty() => {
                    ret.push_str(role_name);
                    ret.push(':');
                    let start = ret.len();
                    ret.push(' ');
                    ret.push_str(msg);
                    ret.push_str(seps[i % 2]);
                    if *role == 1 {
                        if let Some(s) = supervised.as_deref_mut() {
                            s.push(start..ret.len());
                        }
                    }
                }
                (SeparatorStyle::Two, _) => {
                    ret.push_str(role_name);
                    ret.push(':');
                }
                (SeparatorStyle::Plain, Some(msg)) if !msg.is_empty() => {
                    let start = ret.len();
                    ret.push_str(msg);
                    ret.push_str(seps[i % 2]);
                    if *role == 1 {
                        if let Some(s) = supervised.as_deref_mut() {
                            s.push(start..ret.len());
                        }
                    }
                }
                (SeparatorStyle::Plain, _) => {}
            }
        }
        ret
    }

    /// Renders a training conversation the way LLaVA's `preprocess` does for this template.
    ///
    /// `turns` must alternate human/gpt starting with human (as [`super::json::load_llava_json`]
    /// guarantees). For image records, LLaVA's `preprocess_multimodal` first moves `<image>` to
    /// the front of its turn: `"<image>\n" + value.replace("<image>", "").strip()`.
    ///
    /// `plain` needs exactly one human turn with `<image>` and one answer (LLaVA asserts both);
    /// its text is `"<image>" + caption + "\n"` and only the caption and `"\n"` are supervised.
    pub fn render_training(&self, turns: &[Turn], has_image: bool) -> Result<Rendered, String> {
        for (t, turn) in turns.iter().enumerate() {
            let expected = if t % 2 == 0 { Role::Human } else { Role::Gpt };
            if turn.role != expected {
                return Err(format!(
                    "turn {t} is from \"{}\"; turns must alternate human, gpt, … starting with human",
                    turn.role.as_str()
                ));
            }
        }
        match self.style {
            SeparatorStyle::Plain => {
                if turns.len() != 2 {
                    return Err(format!(
                        "the plain (pretraining) template needs exactly one human turn and one caption, found {} turns",
                        turns.len()
                    ));
                }
                if !has_image || !turns[0].value.contains(IMAGE_PLACEHOLDER) {
                    return Err(format!(
                        "the plain (pretraining) template needs an image record with {IMAGE_PLACEHOLDER} in its human turn"
                    ));
                }
                // preprocess_plain does not call get_prompt (which would put `sep` between the
                // two messages): it concatenates "<image>" + caption + sep.
                let text = format!("{IMAGE_PLACEHOLDER}{}{}", turns[1].value, self.sep);
                let supervised = vec![Range {
                    start: IMAGE_PLACEHOLDER.len(),
                    end: text.len(),
                }];
                Ok(Rendered { text, supervised })
            }
            SeparatorStyle::Two => {
                let moved: Vec<String> = turns
                    .iter()
                    .map(|t| {
                        if has_image {
                            move_image_to_front(&t.value)
                        } else {
                            t.value.to_string()
                        }
                    })
                    .collect();
                let messages: Vec<(usize, Option<&str>)> = moved
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (i % 2, Some(m.as_str())))
                    .collect();
                let mut supervised = Vec::with_capacity(turns.len() / 2);
                let text = self.get_prompt(&messages, Some(&mut supervised));
                Ok(Rendered { text, supervised })
            }
        }
    }

    /// The prompt a model is asked to continue at eval time, as lmms-eval's `llava` wrapper
    /// builds it: when the request has `n_images` images and `context` holds no literal
    /// `<image>`, the user message is `" ".join(["<image>"] * n_images) + "\n" + context`; then
    /// the user message and an empty assistant slot go through `get_prompt`. For `vicuna_v1`:
    /// `"{system} USER: <image>\n{context} ASSISTANT:"` (nothing after the colon).
    pub fn generation_prompt(&self, context: &str, n_images: usize) -> String {
        let question = if n_images > 0 && !context.contains(IMAGE_PLACEHOLDER) {
            let images = vec![IMAGE_PLACEHOLDER; n_images].join(" ");
            format!("{images}\n{context}")
        } else {
            context.to_string()
        };
        self.get_prompt(&[(0, Some(&question)), (1, None)], None)
    }
}

/// LLaVA's `preprocess_multimodal` for one turn: a turn holding `<image>` becomes
/// `"<image>\n" + rest.strip()` (then stripped again, which only matters for an image-only turn).
pub fn move_image_to_front(value: &str) -> String {
    if !value.contains(IMAGE_PLACEHOLDER) {
        return value.to_string();
    }
    let rest = value.replace(IMAGE_PLACEHOLDER, "");
    let moved = format!("{IMAGE_PLACEHOLDER}\n{}", rest.trim());
    moved.trim().to_string()
}

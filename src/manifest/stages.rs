//! Stage settings: `[pretrain]`, `[finetune]`, `[eval]`, with the paper's hyper-parameters as
//! defaults (paper.md §3.3). These structs are what the stages read and what keys hash.
//!
//! A manifest table (or a dotted grid axis such as `finetune.lr`) is applied field by field onto
//! the defaults; each field is type-checked by serde against the struct, so a wrong type is
//! reported at the value that has it, and unknown fields get a did-you-mean.

pub use crate::model::llm::CrossAttnConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Learning-rate schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    Cosine,
    Linear,
    Constant,
}

/// Conversation template (LLaVA's `--version`): `plain` for stage-1 alignment, `vicuna_v1` for
/// instruction tuning and evaluation; also `llava_v1` and `vicuna_v1_nosys`.
pub use crate::data::TemplateKind as Template;

/// How a non-square image becomes the encoder's square input (LLaVA's `image_aspect_ratio`),
/// owned by the data pipeline that applies it.
pub use crate::data::ImageAspect;

/// Hyper-parameters of a training stage (`[pretrain]` and `[finetune]` share the shape; their
/// defaults differ).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Peak learning rate.
    pub lr: f64,
    pub weight_decay: f64,
    /// Warm-up length in optimiser steps. Setting it (in a section or a grid axis) clears
    /// `warmup_ratio`, and setting `warmup_ratio` clears it: the last one written wins.
    pub warmup_steps: Option<u64>,
    /// Warm-up length as a fraction of the total steps.
    pub warmup_ratio: Option<f64>,
    pub scheduler: Scheduler,
    /// Samples per forward pass (the paper's per-device batch).
    pub batch: u64,
    /// Forward passes per optimiser step; the effective batch is `batch × grad_accum`.
    pub grad_accum: u64,
    pub epochs: u64,
    /// Stop after this many optimiser steps (None: run the epochs).
    pub max_steps: Option<u64>,
    /// Maximum tokens per sample (text + image tokens); longer samples are truncated.
    pub max_len: u64,
    pub template: Template,
    pub image_aspect: ImageAspect,
    /// LLaVA's `mm_projector_lr`: a separate peak learning rate for the fusion weights (fusion
    /// module, projectors, I_M sub-blocks); `lr` then applies to the rest (the LLM when
    /// finetuning). Unset = one learning rate for everything, the paper's recipe. Left out of
    /// the serialised settings while unset, so adding the option changed no existing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mm_projector_lr: Option<f64>,
    /// Finetuning: keep the LLM frozen and train the fusion weights only (LLaVA's
    /// `tune_mm_mlp_adapter` on stage-2 data). Pretraining always freezes the LLM. Left out of
    /// the serialised settings while false, so adding the option changed no existing key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_llm: bool,
}

impl TrainSettings {
    /// Stage 1 of the paper's `train.sh`: projector alignment on LCS-558K.
    pub fn pretrain_default() -> Self {
        TrainSettings {
            lr: 1e-3,
            weight_decay: 0.05,
            warmup_steps: Some(200),
            warmup_ratio: None,
            scheduler: Scheduler::Cosine,
            batch: 1,
            grad_accum: 8,
            epochs: 1,
            max_steps: None,
            max_len: 2048,
            template: Template::Plain,
            image_aspect: ImageAspect::Square,
            mm_projector_lr: None,
            freeze_llm: false,
        }
    }

    /// Stage 2: instruction tuning.
    pub fn finetune_default() -> Self {
        TrainSettings {
            lr: 2e-5,
            weight_decay: 0.0,
            warmup_steps: None,
            warmup_ratio: Some(0.03),
            scheduler: Scheduler::Cosine,
            batch: 1,
            grad_accum: 16,
            epochs: 1,
            max_steps: None,
            max_len: 2048,
            template: Template::VicunaV1,
            image_aspect: ImageAspect::Pad,
            mm_projector_lr: None,
            freeze_llm: false,
        }
    }
}

/// Generation settings of `[eval]` (greedy by default, as lmms-eval runs LLaVA).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSettings {
    /// Default answer length; a benchmark's own `max_new_tokens` wins over it.
    pub max_new_tokens: u64,
    /// 0 = greedy.
    pub temperature: f64,
    pub num_beams: u64,
    /// Samples answered per generation batch (unset: [`DEFAULT_EVAL_BATCH`]). Batching never
    /// changes an answer, so this bounds how a task runs, not what it publishes: the plan moves
    /// it out of the task key into the task's run-time options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u64>,
    /// Evaluate only the first N samples (quick looks; None = all).
    pub limit: Option<u64>,
}

/// `[eval] batch` when the manifest does not set it: enough rows to amortise a small model's
/// per-op overhead, few enough that a 7B model's padded prompts (576 image tokens each) fit.
pub const DEFAULT_EVAL_BATCH: u64 = 16;

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            max_new_tokens: 128,
            temperature: 0.0,
            num_beams: 1,
            batch: None,
            limit: None,
        }
    }
}

/// A settings struct whose numeric fields have domains (a learning rate is positive, a batch
/// holds at least one sample): checked field by field as a manifest sets them, so `lr = -2e-5`
/// is an error at its value, not a run that trains backwards or divides by zero hours later.
pub trait Domains {
    /// Why the value `field` now holds is outside its domain, with how to fix it; `None` when
    /// it is inside (or the field has no numeric domain).
    fn domain_error(&self, field: &str) -> Option<DomainError>;
}

/// A value outside its field's domain: what is wrong, and a hint that fixes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainError {
    pub message: String,
    pub hint: String,
}

fn out_of_domain(message: &str, hint: &str) -> Option<DomainError> {
    Some(DomainError {
        message: message.into(),
        hint: hint.into(),
    })
}

/// A positive, finite rate (learning rates, temperatures' cousins).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

impl Domains for TrainSettings {
    fn domain_error(&self, field: &str) -> Option<DomainError> {
        match field {
            "lr" if !positive(self.lr) => out_of_domain(
                "the learning rate must be positive and finite",
                "the paper uses 1e-3 to pretrain and 2e-5 to finetune",
            ),
            "mm_projector_lr" if self.mm_projector_lr.is_some_and(|x| !positive(x)) => {
                out_of_domain(
                    "the projector's learning rate must be positive and finite",
                    "LLaVA's recipes set 2e-5 to 1e-3; leave it out to use `lr` for every weight",
                )
            }
            "weight_decay" if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) => {
                out_of_domain(
                    "weight decay must be zero or positive",
                    "LLaVA uses 0.0; 0.05 is the paper's pretraining value",
                )
            }
            "warmup_ratio"
                if self
                    .warmup_ratio
                    .is_some_and(|r| !(r.is_finite() && (0.0..1.0).contains(&r))) =>
            {
                out_of_domain(
                    "warm-up as a fraction of the steps must lie in [0, 1)",
                    "0.03 is LLaVA's; use `warmup_steps` for a length in steps",
                )
            }
            "batch" if self.batch == 0 => {
                out_of_domain("a batch holds at least one sample", "set 1 or more")
            }
            "grad_accum" if self.grad_accum == 0 => out_of_domain(
                "at least one forward pass per optimiser step",
                "set 1 for no accumulation",
            ),
            "epochs" if self.epochs == 0 => out_of_domain(
                "at least one epoch",
                "set 1, and `max_steps` to stop earlier",
            ),
            "max_steps" if self.max_steps == Some(0) => out_of_domain(
                "a stage of 0 steps trains nothing",
                "leave `max_steps` out to run the epochs, or set 1 or more",
            ),
            "max_len" if self.max_len == 0 => out_of_domain(
                "samples need room for at least one token",
                "LLaVA uses 2048; it bounds text + image tokens",
            ),
            _ => None,
        }
    }
}

impl Domains for EvalSettings {
    fn domain_error(&self, field: &str) -> Option<DomainError> {
        match field {
            "max_new_tokens" if self.max_new_tokens == 0 => out_of_domain(
                "an answer needs at least one new token",
                "lmms-eval's short-answer tasks use 16 or more",
            ),
            "temperature" if !(self.temperature.is_finite() && self.temperature >= 0.0) => {
                out_of_domain(
                    "the temperature must be zero (greedy) or positive",
                    "lmms-eval runs LLaVA greedy: 0",
                )
            }
            "num_beams" if self.num_beams == 0 => out_of_domain(
                "at least one beam",
                "1 is greedy search, as lmms-eval runs LLaVA",
            ),
            "batch" if self.batch == Some(0) => out_of_domain(
                "at least one sample per generation batch",
                "leave `batch` out for the default (16), or set 1 to answer one at a time",
            ),
            "limit" if self.limit == Some(0) => out_of_domain(
                "a limit of 0 evaluates no sample",
                "leave `limit` out to evaluate every sample",
            ),
            _ => None,
        }
    }
}

impl Domains for CrossAttnConfig {
    fn domain_error(&self, field: &str) -> Option<DomainError> {
        match field {
            "init_std" if !positive(self.init_std) => out_of_domain(
                "the initialisation's standard deviation must be positive and finite",
                "0.02 is the default (as for the LLM's own weights)",
            ),
            _ => None,
        }
    }
}

/// The settings sections a dotted grid axis may name (`pretrain.lr`, `eval.limit`,
/// `i_m.placement`, …).
pub const STAGE_SECTIONS: [&str; 4] = ["pretrain", "finetune", "eval", "i_m"];

/// Field names of a settings struct, in declaration order.
pub fn field_names<T: Serialize>(defaults: &T) -> Vec<String> {
    match serde_json::to_value(defaults) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Fields of [`TrainSettings`] that its defaults do not serialise (unset options).
const TRAIN_OPTIONAL_FIELDS: [&str; 2] = ["mm_projector_lr", "freeze_llm"];
/// Fields of [`EvalSettings`] that its defaults do not serialise (unset options).
const EVAL_OPTIONAL_FIELDS: [&str; 1] = ["batch"];

/// Field names of a section (`pretrain` / `finetune` / `eval`).
pub fn section_fields(section: &str) -> Vec<String> {
    match section {
        "pretrain" | "finetune" => {
            let mut f = field_names(&TrainSettings::pretrain_default());
            f.extend(TRAIN_OPTIONAL_FIELDS.map(String::from));
            f
        }
        "eval" => {
            let mut f = field_names(&EvalSettings::default());
            f.extend(EVAL_OPTIONAL_FIELDS.map(String::from));
            f
        }
        "i_m" => field_names(&CrossAttnConfig::default()),
        _ => Vec::new(),
    }
}

/// `value` for field `field` of settings section `section` (one of [`STAGE_SECTIONS`]), as the
/// section's struct types it (`lr = 1` → `1.0`), or why it cannot be.
pub fn typed_field(
    section: &str,
    field: &str,
    value: &serde_json::Value,
) -> Result<serde_json::Value, FieldError> {
    fn typed<T: Serialize + DeserializeOwned + Domains>(
        base: &T,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<serde_json::Value, FieldError> {
        let set = with_field(base, field, value)?;
        Ok(serde_json::to_value(set).map_err(|e| FieldError::Type(e.to_string()))?[field].clone())
    }
    match section {
        "pretrain" | "finetune" => typed(&TrainSettings::pretrain_default(), field, value),
        "eval" => typed(&EvalSettings::default(), field, value),
        "i_m" => typed(&CrossAttnConfig::default(), field, value),
        _ => Err(FieldError::Unknown),
    }
}

/// Why a field cannot take a value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldError {
    Unknown,
    Type(String),
    /// The right type, outside the field's domain ([`Domains`]).
    Domain(DomainError),
}

/// Sets one field of `base` to `value`, checking the field exists, the value has its type and
/// lies in the field's domain.
pub fn with_field<T: Serialize + DeserializeOwned + Domains>(
    base: &T,
    field: &str,
    value: &serde_json::Value,
) -> Result<T, FieldError> {
    let mut json = serde_json::to_value(base).map_err(|e| FieldError::Type(e.to_string()))?;
    let obj = json.as_object_mut().ok_or(FieldError::Unknown)?;
    // A field absent from the serialised settings is either unknown or an unset option that is
    // not serialised (`mm_projector_lr`); the settings structs deny unknown fields, so
    // deserialising tells the two apart.
    let present = obj.contains_key(field);
    obj.insert(field.to_string(), value.clone());
    // The two warm-up spellings are one setting: writing one replaces the other, so a manifest's
    // `warmup_ratio` is not shadowed by the paper's pretraining default `warmup_steps = 200`
    // (nor a `warmup_steps` by finetuning's default ratio).
    let other = match field {
        "warmup_ratio" => Some("warmup_steps"),
        "warmup_steps" => Some("warmup_ratio"),
        _ => None,
    };
    if let Some(other) = other.filter(|_| !value.is_null()) {
        if let Some(slot) = obj.get_mut(other) {
            *slot = serde_json::Value::Null;
        }
    }
    let set: T = serde_json::from_value(json).map_err(|e| {
        let msg = e.to_string();
        if !present && msg.starts_with("unknown field") {
            FieldError::Unknown
        } else {
            FieldError::Type(msg)
        }
    })?;
    match set.domain_error(field) {
        Some(e) => Err(FieldError::Domain(e)),
        None => Ok(set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_warmup_ratio_replaces_the_default_warmup_steps() {
        let pre = TrainSettings::pretrain_default();
        assert_eq!(pre.warmup_steps, Some(200));
        let t = with_field(&pre, "warmup_ratio", &json!(0.03)).unwrap();
        assert_eq!((t.warmup_steps, t.warmup_ratio), (None, Some(0.03)));
        let t = with_field(&t, "warmup_steps", &json!(5)).unwrap();
        assert_eq!((t.warmup_steps, t.warmup_ratio), (Some(5), None));
    }

    #[test]
    fn fields_are_type_checked_and_integers_widen_to_floats() {
        let base = TrainSettings::finetune_default();
        let t = with_field(&base, "lr", &json!(1)).unwrap();
        assert_eq!(t.lr, 1.0);
        assert!(matches!(
            with_field(&base, "batch", &json!(1.5)),
            Err(FieldError::Type(_))
        ));
        assert!(matches!(
            with_field(&base, "scheduler", &json!("cosin")),
            Err(FieldError::Type(m)) if m.contains("cosine")
        ));
        assert_eq!(
            with_field(&base, "lrr", &json!(1)),
            Err(FieldError::Unknown)
        );
        let t = with_field(&base, "max_steps", &json!(10)).unwrap();
        assert_eq!(t.max_steps, Some(10));
        let t = with_field(&base, "mm_projector_lr", &json!(2e-4)).unwrap();
        assert_eq!(t.mm_projector_lr, Some(2e-4));
        assert!(matches!(
            with_field(&base, "mm_projector_lr", &json!("fast")),
            Err(FieldError::Type(_))
        ));
        assert!(section_fields("finetune").contains(&"mm_projector_lr".to_string()));
        assert!(!section_fields("eval").contains(&"mm_projector_lr".to_string()));
    }

    #[test]
    fn eval_batch_is_an_optional_field_left_out_while_unset() {
        let base = EvalSettings::default();
        assert!(serde_json::to_value(&base).unwrap().get("batch").is_none());
        assert!(section_fields("eval").contains(&"batch".to_string()));
        let e = with_field(&base, "batch", &json!(8)).unwrap();
        assert_eq!(e.batch, Some(8));
        assert!(matches!(
            with_field(&base, "batch", &json!(-1)),
            Err(FieldError::Type(_))
        ));
    }

    #[test]
    fn an_unset_mm_projector_lr_is_not_serialised() {
        let v = serde_json::to_value(TrainSettings::pretrain_default()).unwrap();
        assert!(v.get("mm_projector_lr").is_none());
    }

    #[test]
    fn freeze_llm_is_serialised_only_when_set() {
        let base = TrainSettings::finetune_default();
        assert!(serde_json::to_value(&base)
            .unwrap()
            .get("freeze_llm")
            .is_none());
        let t = with_field(&base, "freeze_llm", &json!(true)).unwrap();
        assert!(t.freeze_llm);
        assert_eq!(serde_json::to_value(&t).unwrap()["freeze_llm"], json!(true));
        assert!(matches!(
            with_field(&base, "freeze_llm", &json!("yes")),
            Err(FieldError::Type(_))
        ));
    }

    #[test]
    fn template_takes_every_template_name_and_lists_them_when_wrong() {
        let base = TrainSettings::finetune_default();
        let t = with_field(&base, "template", &json!("vicuna_v1_nosys")).unwrap();
        assert_eq!(t.template, Template::VicunaV1NoSystem);
        assert_eq!(
            serde_json::to_value(&t).unwrap()["template"],
            json!("vicuna_v1_nosys")
        );
        // LLaVA's aliases read as the template they name and are written under its own name.
        let t = with_field(&base, "template", &json!("v1")).unwrap();
        assert_eq!(
            serde_json::to_value(&t).unwrap()["template"],
            json!("vicuna_v1")
        );
        let err = with_field(&base, "template", &json!("vicuna")).unwrap_err();
        let msg = format!("{err:?}");
        assert!(
            msg.contains("vicuna_v1_nosys") && msg.contains("plain"),
            "{msg}"
        );
    }

    #[test]
    fn defaults_are_the_papers() {
        let p = TrainSettings::pretrain_default();
        assert_eq!(
            (p.lr, p.weight_decay, p.warmup_steps),
            (1e-3, 0.05, Some(200))
        );
        assert_eq!(p.template, Template::Plain);
        let f = TrainSettings::finetune_default();
        assert_eq!((f.lr, f.warmup_ratio), (2e-5, Some(0.03)));
        assert_eq!(f.image_aspect, ImageAspect::Pad);
    }
}

//! `synth:` entries: which generated thing each one asks for, and which world it comes from.
//!
//! # Manifest spelling
//!
//! The world generator ([`crate::synth::generate`]) writes every split and every benchmark of a
//! world in one go, so every `synth:` entry names a *part* of a world and the planner makes one
//! `prepare` task per distinct world config:
//!
//! ```toml
//! [data]
//! world = { source = "synth:world", params = { seed = 0, n_pretrain = 2000 } }  # the world itself
//! syn-pt  = { source = "synth:pretrain", params = { world = "world" } }   # its captions
//! syn-sft = { source = "synth:finetune", params = { world = "world" } }   # its instructions
//! [benchmarks]
//! syn-pope = { source = "synth:pope", params = { world = "world" } }      # any synth benchmark name
//! [models]
//! tiny-clip = { kind = "vision", family = "clip", source = "synth:clip", depth = 12,
//!               params = { world = "world", width = 64 } }              # trained on that world
//! ```
//!
//! `params.world` is the name of a `[data]` entry whose source is `synth:world` (its `params` are
//! a [`SynthConfig`]), or an inline table (a [`SynthConfig`] itself); without it the default
//! world ([`SynthConfig::default`]) is meant. A `synth:world` entry's own `params` are its config.
//!
//! Parts: data `pretrain` (alias `captions`), `finetune` (aliases `instruct`, `instructions`),
//! `world`; any benchmark name [`Benchmark::from_name`] knows (`pope`, `gqa`, `synth_mme`, …);
//! models `clip`, `siglip` (vision, matching the entry's family) and `llama` (llm).
//!
//! # What keys see
//!
//! Before hashing, `params.world` is replaced by the world's *full* config (every field, defaults
//! filled in), so keys depend on the world's content, never on the name of the entry that wrote
//! it, and two spellings of the same world share one task. A model's other `params` are likewise
//! completed with its trainer's defaults (`VisionParams`, `LmParams`), so unknown keys are plan
//! errors and a changed default changes the key. Dataset and benchmark parts get no
//! task of their own: their consumers depend on the world task and read their part from its
//! published directory (`crate::stages::prepare` has the helpers). Model parts get a `prepare`
//! task each, depending on the world task they train on.

use crate::manifest::entries::Source;
use crate::manifest::{Diagnostics, Loc, Manifest};
use crate::synth::{Benchmark, SynthConfig};
use serde_json::{Map, Value as Json};

/// The part of a world a `synth:` entry asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SynthPart {
    /// The whole world (a `synth:world` data entry).
    World,
    /// `pretrain/captions.json` + images.
    Pretrain,
    /// `finetune/instructions.json` + images.
    Finetune,
    /// One benchmark directory (its generator task name, e.g. `synth_pope`).
    Benchmark(String),
    /// A tiny foundation model trained on the world (`clip`, `siglip`, `llama`).
    Model(String),
}

impl SynthPart {
    /// Parses the `<what>` of a data entry's `synth:<what>`.
    pub fn data(what: &str) -> Option<SynthPart> {
        match what {
            "world" => Some(SynthPart::World),
            "pretrain" | "captions" => Some(SynthPart::Pretrain),
            "finetune" | "instruct" | "instructions" => Some(SynthPart::Finetune),
            _ => None,
        }
    }

    /// Parses the `<what>` of a benchmark entry's `synth:<what>`.
    pub fn benchmark(what: &str) -> Option<SynthPart> {
        Benchmark::from_name(what).map(|b| SynthPart::Benchmark(b.spec().task.to_string()))
    }
}

/// A `synth:` entry, resolved.
#[derive(Clone, Debug)]
pub struct ResolvedSynth {
    pub part: SynthPart,
    /// The world's full config as JSON (what keys hash).
    pub world: Json,
    /// How the manifest named the world (for plan labels): an entry name, `inline` or `default`.
    pub world_label: String,
    /// A model's trainer settings with every default filled in (so keys change when a default
    /// does, and a typo is a plan error, not a surprise after minutes of training).
    pub trainer: Option<Map<String, Json>>,
}

/// A `synth:` model's trainer parameters, complete, or an error naming the problem.
fn trainer_params(what: &str, params: &Map<String, Json>) -> Result<Map<String, Json>, String> {
    use crate::model::vision::VisionArch;
    use crate::synth::foundation::{lm::LmParams, vision::VisionParams};
    let full = match what {
        "llama" => LmParams::from_params(params).map(serde_json::to_value),
        "siglip" => {
            VisionParams::from_family_params(VisionArch::Siglip, params).map(serde_json::to_value)
        }
        _ => VisionParams::from_family_params(VisionArch::Clip, params).map(serde_json::to_value),
    };
    match full {
        Ok(Ok(Json::Object(m))) => Ok(m),
        Ok(_) => Err("internal: trainer params did not serialise to a table".into()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// The world config an entry's `params` point at, as full JSON.
fn world_of(
    m: &Manifest,
    own: &Map<String, Json>,
    is_world_entry: bool,
) -> Result<(Json, String), (String, Option<String>)> {
    let parse = |v: Json, what: &str| -> Result<Json, (String, Option<String>)> {
        let cfg: SynthConfig = serde_json::from_value(v).map_err(|e| {
            (
                format!("{what} is not a world config: {e}"),
                Some(format!(
                    "world fields: {}",
                    crate::manifest::stages::field_names(&SynthConfig::default()).join(", ")
                )),
            )
        })?;
        cfg.validate().map_err(|e| (format!("{what}: {e}"), None))?;
        Ok(serde_json::to_value(cfg).expect("a SynthConfig serialises"))
    };
    if is_world_entry {
        return Ok((parse(Json::Object(own.clone()), "`params`")?, String::new()));
    }
    match own.get("world") {
        None => Ok((
            serde_json::to_value(SynthConfig::default()).expect("a SynthConfig serialises"),
            "default".into(),
        )),
        Some(Json::String(name)) => {
            let Some(entry) = m.dataset(name) else {
                return Err((
                    format!("`params.world = \"{name}\"` names no [data] entry"),
                    Some(format!("add `[data] {name} = {{ source = \"synth:world\", params = {{ seed = 0 }} }}`, or give the world config inline")),
                ));
            };
            if entry.source.as_ref().map(Source::canonical).as_deref() != Some("synth:world") {
                return Err((
                    format!("`params.world = \"{name}\"` names a dataset that is not a world"),
                    Some(format!(
                        "give `[data.{name}]` `source = \"synth:world\"`, or name the entry that has it"
                    )),
                ));
            }
            let v = parse(
                Json::Object(entry.params.clone()),
                &format!("the params of [data.{name}]"),
            )?;
            Ok((v, name.clone()))
        }
        Some(v @ Json::Object(_)) => Ok((parse(v.clone(), "`params.world`")?, "inline".into())),
        Some(other) => Err((
            format!("`params.world` must be a [data] entry name or a table, found {other}"),
            None,
        )),
    }
}

/// Resolves one entry's `synth:<what>`; errors are reported at `loc`.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the arguments
pub fn resolve(
    m: &Manifest,
    section: &str,
    name: &str,
    what: &str,
    params: &Map<String, Json>,
    family: Option<&str>,
    loc: &Loc,
    d: &mut Diagnostics,
) -> Option<ResolvedSynth> {
    let part = match section {
        "models" => match (what, family) {
            ("clip", Some("clip")) | ("siglip", Some("siglip")) | ("llama", Some("llama")) => {
                Some(SynthPart::Model(what.to_string()))
            }
            ("clip" | "siglip" | "llama", f) => {
                d.error(
                    loc,
                    format!(
                        "[models.{name}]: `synth:{what}` builds a {what} model but the entry's family is `{}`",
                        f.unwrap_or("?")
                    ),
                    Some(format!("set `family = \"{what}\"`")),
                );
                return None;
            }
            _ => None,
        },
        "data" => SynthPart::data(what),
        _ => SynthPart::benchmark(what),
    };
    let Some(part) = part else {
        let known = match section {
            "models" => "clip, siglip, llama".to_string(),
            "data" => "world, pretrain, finetune".to_string(),
            _ => Benchmark::ALL
                .iter()
                .map(|b| b.spec().task.trim_start_matches("synth_").to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        d.error(
            loc,
            format!("[{section}.{name}]: the engine cannot generate `synth:{what}`"),
            Some(format!("use one of: {known}")),
        );
        return None;
    };
    let trainer = match &part {
        SynthPart::Model(what) => match trainer_params(what, params) {
            Ok(t) => Some(t),
            Err(e) => {
                d.error(
                    loc,
                    format!("[{section}.{name}]: {e}"),
                    Some(format!(
                        "see the defaults of synth:{what} in the prepare stage docs"
                    )),
                );
                return None;
            }
        },
        _ => None,
    };
    match world_of(m, params, part == SynthPart::World) {
        Ok((world, label)) => Some(ResolvedSynth {
            part,
            world,
            world_label: if label.is_empty() {
                name.to_string()
            } else {
                label
            },
            trainer,
        }),
        Err((msg, help)) => {
            d.error(loc, format!("[{section}.{name}]: {msg}"), help);
            None
        }
    }
}

/// `params` with `world` replaced by the world's full config (a `synth:world` entry's params
/// become the full config itself).
pub fn resolved_params(params: &Map<String, Json>, r: &ResolvedSynth) -> Map<String, Json> {
    if r.part == SynthPart::World {
        return r.world.as_object().cloned().unwrap_or_default();
    }
    let mut out = r.trainer.clone().unwrap_or_else(|| params.clone());
    out.insert("world".into(), r.world.clone());
    out
}

//! Named entries of `[models]`, `[data]` and `[benchmarks]`, and where each comes from.
//!
//! An entry's content ([`crate::plan::config::ModelSpec`] etc.) is what keys hash: its content, never its name, so
//! renaming an entry reruns nothing and two manifests naming the same checkpoint differently share
//! tasks. Relative paths are resolved against the directory of the file that wrote them.

use super::diag::{suggest, Diagnostics};
use super::read;
use super::source::{Entry, Loc, Sources};
use serde_json::{Map, Value as Json};
use std::path::{Component, Path, PathBuf};

/// Where a model, dataset or benchmark comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `hf:org/name[@revision]`, downloaded by the stage that loads it.
    Hf {
        repo: String,
        revision: Option<String>,
    },
    /// A local directory or file (absolute, resolved against the manifest that wrote it).
    Local(PathBuf),
    /// `synth:<what>`: built by the engine itself in a `prepare` task.
    Synth(String),
}

impl Source {
    /// Parses a source string; `base` is the directory relative paths are resolved against.
    pub fn parse(s: &str, base: &Path) -> Result<Source, String> {
        if let Some(rest) = s.strip_prefix("hf:") {
            let (repo, revision) = match rest.split_once('@') {
                Some((r, rev)) => (r, Some(rev)),
                None => (rest, None),
            };
            let parts: Vec<&str> = repo.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|p| p.trim().is_empty()) {
                return Err(format!(
                    "`{s}` is not a Hugging Face reference: write `hf:org/name` or `hf:org/name@revision`"
                ));
            }
            if revision == Some("") {
                return Err(format!("`{s}` has an empty revision after `@`"));
            }
            Ok(Source::Hf {
                repo: repo.to_string(),
                revision: revision.map(str::to_string),
            })
        } else if let Some(what) = s.strip_prefix("synth:") {
            if what.trim().is_empty() {
                return Err(format!(
                    "`{s}` names no synthetic generator: write e.g. `synth:clip`"
                ));
            }
            Ok(Source::Synth(what.to_string()))
        } else if s.trim().is_empty() {
            Err("the source is empty: give `hf:org/name`, a local path or `synth:<what>`".into())
        } else {
            Ok(Source::Local(resolve_path(base, s)))
        }
    }

    pub fn is_synth(&self) -> bool {
        matches!(self, Source::Synth(_))
    }

    /// The canonical string form (`hf:org/name@rev`, `synth:what`, or the absolute path).
    pub fn canonical(&self) -> String {
        match self {
            Source::Hf { repo, revision } => match revision {
                Some(r) => format!("hf:{repo}@{r}"),
                None => format!("hf:{repo}"),
            },
            Source::Local(p) => p.display().to_string(),
            Source::Synth(w) => format!("synth:{w}"),
        }
    }
}

/// Joins `p` onto `base` when relative and removes `.`/`..` lexically (no filesystem access:
/// planning works before the data exists).
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let joined = if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Directory of the file a location is in.
pub fn base_dir(sources: &Sources, loc: &Loc) -> PathBuf {
    sources.dir(loc.file).to_path_buf()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Vision,
    Llm,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Vision => "vision",
            ModelKind::Llm => "llm",
        }
    }
}

/// A `[models.<name>]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    pub name: String,
    /// Where the entry's name was written.
    pub loc: Loc,
    pub kind: ModelKind,
    /// `clip` | `siglip` (vision), `llama` (llm).
    pub family: String,
    pub source: Source,
    /// Vision: `num_hidden_layers` of the checkpoint.
    pub depth: Option<usize>,
    /// Vision: whether the tower's last layer is dropped (default: true for SigLIP).
    pub drop_last_layer: bool,
    /// LLM: decoder layers.
    pub layers: Option<usize>,
    /// Free-form settings for the stage that builds a `synth:` model (width, heads, …).
    pub params: Map<String, Json>,
}

/// A `[data.<name>]` entry: LLaVA-format JSON + image folder, or a synthetic set.
#[derive(Clone, Debug, PartialEq)]
pub struct DataEntry {
    pub name: String,
    pub loc: Loc,
    /// `llava-json` for file datasets; None for synthetic ones.
    pub format: Option<String>,
    pub json: Option<PathBuf>,
    pub images: Option<PathBuf>,
    /// `synth:<what>` for a generated dataset.
    pub source: Option<Source>,
    pub params: Map<String, Json>,
    /// `on_error = "skip"`: malformed records (and samples that cannot be trained on) are left
    /// out and counted instead of failing the stage. Default (`fail`): false. The plan turns it
    /// into the loader's `OnError`.
    pub skip_malformed: bool,
}

impl DataEntry {
    pub fn is_synth(&self) -> bool {
        self.source.as_ref().is_some_and(Source::is_synth)
    }
}

/// A `[benchmarks.<name>]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchmarkEntry {
    pub name: String,
    pub loc: Loc,
    /// A benchmark directory (absolute).
    pub path: Option<PathBuf>,
    /// `synth:<what>` for a generated benchmark.
    pub source: Option<Source>,
    /// Answer length for this benchmark (wins over `[eval] max_new_tokens`).
    pub max_new_tokens: Option<u64>,
    pub params: Map<String, Json>,
}

impl BenchmarkEntry {
    pub fn is_synth(&self) -> bool {
        self.source.as_ref().is_some_and(Source::is_synth)
    }
}

fn source_of(
    t: &super::source::Table,
    what: &str,
    sources: &Sources,
    d: &mut Diagnostics,
) -> Option<Source> {
    let (s, loc) = read::string(t, "source", what, d)?;
    match Source::parse(&s, &base_dir(sources, &loc)) {
        Ok(src) => Some(src),
        Err(e) => {
            d.error(&loc, format!("{what}: {e}"), None);
            None
        }
    }
}

fn path_of(
    t: &super::source::Table,
    key: &str,
    what: &str,
    sources: &Sources,
    d: &mut Diagnostics,
) -> Option<PathBuf> {
    let (s, loc) = read::string(t, key, what, d)?;
    Some(resolve_path(&base_dir(sources, &loc), &s))
}

/// Reads one `[models.<name>]` entry.
pub fn model(e: &Entry, sources: &Sources, d: &mut Diagnostics) -> Option<ModelEntry> {
    let what = format!("[models.{}]", e.key);
    let Some(t) = e.node.as_table() else {
        d.error(
            &e.node.loc,
            format!("{what} must be a table like {{ kind = \"vision\", family = \"clip\", source = \"hf:org/name\", depth = 24 }}"),
            None,
        );
        return None;
    };
    read::check_keys(
        t,
        &[
            "kind",
            "family",
            "source",
            "depth",
            "drop_last_layer",
            "layers",
            "params",
        ],
        &what,
        d,
    );
    let errors_before = d.errors.len();
    let kind = match read::string(t, "kind", &what, d) {
        Some((k, loc)) => match k.as_str() {
            "vision" => Some(ModelKind::Vision),
            "llm" => Some(ModelKind::Llm),
            _ => {
                d.error(
                    &loc,
                    format!("{what}: unknown kind `{k}`"),
                    Some(suggest(&k, &["vision", "llm"])),
                );
                None
            }
        },
        None => {
            d.error(
                &e.key_loc,
                format!("{what} has no `kind`"),
                Some("add `kind = \"vision\"` or `kind = \"llm\"`".into()),
            );
            None
        }
    };
    let family = read::string(t, "family", &what, d);
    let source = source_of(t, &what, sources, d);
    if t.get("source").is_none() {
        d.error(
            &e.key_loc,
            format!("{what} has no `source`"),
            Some("add `source = \"hf:org/name\"`, a local path, or `synth:<what>`".into()),
        );
    }
    let depth = read::uint(t, "depth", &what, d);
    let layers = read::uint(t, "layers", &what, d);
    let drop = read::boolean(t, "drop_last_layer", &what, d);
    let params = read::params(t, &what, d);
    // Layer resolution needs a base layer below the top: an effective depth of at least 2.
    if let Some((n, loc)) = &depth {
        let dropped = drop
            .as_ref()
            .map(|x| x.0)
            .unwrap_or_else(|| family.as_ref().is_some_and(|f| f.0 == "siglip"))
            as u64;
        if n.saturating_sub(dropped) < 2 {
            d.error(
                loc,
                format!(
                    "{what}: a vision tower of depth {n}{} leaves no layer to fuse",
                    if dropped == 1 {
                        " that drops its last layer"
                    } else {
                        ""
                    }
                ),
                Some(
                    "the effective depth (depth, minus 1 with drop_last_layer) must be at least 2"
                        .into(),
                ),
            );
        }
    }
    if let Some((0, loc)) = &layers {
        d.error(
            loc,
            format!("{what}: an LLM needs at least one decoder layer"),
            None,
        );
    }
    let kind = kind?;
    let families: &[&str] = match kind {
        ModelKind::Vision => &["clip", "siglip"],
        ModelKind::Llm => &["llama"],
    };
    let family = match family {
        Some((f, _)) if families.contains(&f.as_str()) => Some(f),
        Some((f, loc)) => {
            d.error(
                &loc,
                format!("{what}: `{f}` is not a {} family", kind.as_str()),
                Some(suggest(&f, families)),
            );
            None
        }
        None => {
            d.error(
                &e.key_loc,
                format!("{what} has no `family`"),
                Some(format!("add `family = \"{}\"`", families[0])),
            );
            None
        }
    };
    match kind {
        ModelKind::Vision => {
            if depth.is_none() && t.get("depth").is_none() {
                d.error(&e.key_loc, format!("{what} has no `depth`"), Some("add `depth = N`, the checkpoint's `num_hidden_layers` (24 for CLIP ViT-L/14, 27 for SigLIP so400m); planning needs it without downloading".into()));
            }
            if let Some(k) = t.get("layers") {
                d.error(
                    &k.key_loc,
                    format!("{what}: `layers` is for LLM entries"),
                    Some("a vision tower's layer count is `depth`".into()),
                );
            }
        }
        ModelKind::Llm => {
            if layers.is_none() && t.get("layers").is_none() {
                d.error(&e.key_loc, format!("{what} has no `layers`"), Some("add `layers = N`, the checkpoint's `num_hidden_layers` (24 for MobileLLaMA-1.4B, 32 for 2.7B)".into()));
            }
            for k in ["depth", "drop_last_layer"] {
                if let Some(x) = t.get(k) {
                    d.error(
                        &x.key_loc,
                        format!("{what}: `{k}` is for vision entries"),
                        Some("an LLM's decoder layer count is `layers`".into()),
                    );
                }
            }
        }
    }
    if d.errors.len() > errors_before {
        return None;
    }
    let family = family?;
    let drop_last_layer = drop.map(|x| x.0).unwrap_or(family == "siglip");
    Some(ModelEntry {
        name: e.key.clone(),
        loc: e.key_loc.clone(),
        kind,
        family,
        source: source?,
        depth: depth.map(|x| x.0 as usize),
        drop_last_layer,
        layers: layers.map(|x| x.0 as usize),
        params,
    })
}

/// Reads one `[data.<name>]` entry.
pub fn dataset(e: &Entry, sources: &Sources, d: &mut Diagnostics) -> Option<DataEntry> {
    let what = format!("[data.{}]", e.key);
    let Some(t) = e.node.as_table() else {
        d.error(&e.node.loc, format!("{what} must be a table like {{ format = \"llava-json\", json = \"…\", images = \"…\" }}"), None);
        return None;
    };
    read::check_keys(
        t,
        &["format", "json", "images", "source", "params", "on_error"],
        &what,
        d,
    );
    let errors_before = d.errors.len();
    let source = source_of(t, &what, sources, d);
    let format = read::string(t, "format", &what, d);
    let json = path_of(t, "json", &what, sources, d);
    let images = path_of(t, "images", &what, sources, d);
    let params = read::params(t, &what, d);
    let skip_malformed = match read::string(t, "on_error", &what, d) {
        None => false,
        Some((v, loc)) => match v.as_str() {
            "fail" => false,
            "skip" => true,
            _ => {
                d.error(
                    &loc,
                    format!("{what}: unknown on_error `{v}`"),
                    Some(format!(
                        "{} (`skip` leaves malformed records out and counts them)",
                        suggest(&v, &["fail", "skip"])
                    )),
                );
                false
            }
        },
    };
    match &source {
        Some(Source::Synth(_)) => {
            for k in ["format", "json", "images"] {
                if let Some(x) = t.get(k) {
                    d.error(
                        &x.key_loc,
                        format!("{what}: a `synth:` dataset takes no `{k}`"),
                        Some("remove it, or drop `source` to read files".into()),
                    );
                }
            }
        }
        Some(_) => {
            let loc = &t.get("source").unwrap().node.loc;
            d.error(loc, format!("{what}: datasets come from files (`format`, `json`, `images`) or `synth:<what>`"), Some("point `json` and `images` at a downloaded copy".into()));
        }
        None if t.get("source").is_none() => {
            if let Some((f, loc)) = &format {
                if f != "llava-json" {
                    d.error(
                        loc,
                        format!("{what}: unknown format `{f}`"),
                        Some(suggest(f, &["llava-json"])),
                    );
                }
            }
            for (k, v) in [("json", json.is_some()), ("images", images.is_some())] {
                if !v && t.get(k).is_none() {
                    d.error(&e.key_loc, format!("{what} has no `{k}`"), Some("a LLaVA dataset needs `json` (the conversations) and `images` (their root folder); or use `source = \"synth:<what>\"`".into()));
                }
            }
        }
        None => {}
    }
    if d.errors.len() > errors_before {
        return None;
    }
    let synth = source.is_some();
    Some(DataEntry {
        name: e.key.clone(),
        loc: e.key_loc.clone(),
        format: if synth {
            None
        } else {
            Some(format.map(|f| f.0).unwrap_or_else(|| "llava-json".into()))
        },
        json,
        images,
        source,
        params,
        skip_malformed,
    })
}

/// Reads one `[benchmarks.<name>]` entry.
pub fn benchmark(e: &Entry, sources: &Sources, d: &mut Diagnostics) -> Option<BenchmarkEntry> {
    let what = format!("[benchmarks.{}]", e.key);
    let Some(t) = e.node.as_table() else {
        d.error(
            &e.node.loc,
            format!("{what} must be a table like {{ path = \"benchmarks/pope\" }}"),
            None,
        );
        return None;
    };
    read::check_keys(t, &["path", "source", "max_new_tokens", "params"], &what, d);
    let errors_before = d.errors.len();
    let source = source_of(t, &what, sources, d);
    let path = path_of(t, "path", &what, sources, d);
    let max_new_tokens = read::uint(t, "max_new_tokens", &what, d).map(|(n, loc)| {
        if n == 0 {
            d.error(
                &loc,
                format!("{what}: `max_new_tokens` = 0: an answer needs at least one new token"),
                Some(
                    "lmms-eval's short-answer tasks use 16 or more; leave it out for [eval]'s"
                        .into(),
                ),
            );
        }
        n
    });
    let params = read::params(t, &what, d);
    match (&source, t.get("path")) {
        (Some(Source::Synth(_)), Some(p)) => d.error(
            &p.key_loc,
            format!("{what}: give `path` or a `synth:` source, not both"),
            None,
        ),
        (Some(Source::Synth(_)), None) => {}
        (Some(_), _) => d.error(
            &t.get("source").unwrap().node.loc,
            format!("{what}: a benchmark is a local `path` or `synth:<what>`"),
            Some("download it and give its folder as `path`".into()),
        ),
        (None, None) if t.get("source").is_none() => d.error(
            &e.key_loc,
            format!("{what} has neither `path` nor `source`"),
            Some("add `path = \"benchmarks/<name>\"` or `source = \"synth:<what>\"`".into()),
        ),
        _ => {}
    }
    if d.errors.len() > errors_before {
        return None;
    }
    Some(BenchmarkEntry {
        name: e.key.clone(),
        loc: e.key_loc.clone(),
        path,
        source,
        max_new_tokens,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_paths_resolve_lexically() {
        let base = Path::new("/exp/sub");
        assert_eq!(
            Source::parse("hf:openai/clip@main", base)
                .unwrap()
                .canonical(),
            "hf:openai/clip@main"
        );
        assert!(Source::parse("hf:clip", base).is_err());
        assert_eq!(
            Source::parse("../data/x", base).unwrap(),
            Source::Local(PathBuf::from("/exp/data/x"))
        );
        assert!(Source::parse("synth:", base).is_err());
    }
}

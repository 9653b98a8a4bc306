//! Finding model files: a local directory or a Hugging Face repo id `org/name[@revision]`.
//!
//! Every model (LLM or vision tower, real or tiny) is a directory in the HF layout —
//! `config.json`, `model.safetensors` or shards listed in `model.safetensors.index.json`, and
//! optionally `tokenizer.json` — described by one [`ModelFiles`]. Hub downloads use hf-hub's sync
//! API and its cache (`$HF_HOME/hub`, or `$HF_HUB_CACHE`); `HF_ENDPOINT` picks a mirror;
//! `HF_HUB_OFFLINE=1` resolves from the cache only and says exactly what is missing; `HF_TOKEN`
//! (or the token file in the cache) authenticates gated repos.

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// A model reference as a user writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// A directory in the HF layout.
    Local(PathBuf),
    /// A Hub repository, optionally pinned to a branch, tag or commit.
    Hub {
        repo: String,
        revision: Option<String>,
    },
}

impl ModelRef {
    /// Parses `path/to/dir`, `org/name`, `org/name@rev` or `hf:org/name[@rev]`. An existing local
    /// path wins over a repo id of the same spelling.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("hf:") {
            return Self::parse_repo(rest).with_context(|| format!("model reference `{s}`"));
        }
        if Path::new(s).exists() {
            return Ok(ModelRef::Local(PathBuf::from(s)));
        }
        let looks_local = s.starts_with('/')
            || s.starts_with('.')
            || s.starts_with('~')
            || s.matches('/').count() != 1;
        if looks_local {
            bail!("model `{s}`: no such directory (a Hub model is written `org/name` or `org/name@revision`)");
        }
        Self::parse_repo(s).with_context(|| {
            format!("model `{s}` is neither an existing directory nor a Hub repo id")
        })
    }

    fn parse_repo(s: &str) -> Result<Self> {
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, Some(rev.to_string())),
            Some(_) => bail!("empty revision after `@`"),
            None => (s, None),
        };
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match repo.split_once('/') {
            Some((org, name)) if ok_part(org) && ok_part(name) => {}
            _ => bail!("`{repo}` is not a Hub repo id of the form `org/name`"),
        }
        Ok(ModelRef::Hub {
            repo: repo.to_string(),
            revision,
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Local(p) => write!(f, "{}", p.display()),
            ModelRef::Hub {
                repo,
                revision: Some(r),
            } => write!(f, "{repo}@{r}"),
            ModelRef::Hub {
                repo,
                revision: None,
            } => f.write_str(repo),
        }
    }
}

/// The files of one model in the HF layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFiles {
    /// The directory holding them (a snapshot directory for Hub models).
    pub dir: PathBuf,
    pub config: PathBuf,
    /// One `model.safetensors`, or every shard named by the index, in sorted order.
    pub weights: Vec<PathBuf>,
    pub tokenizer: Option<PathBuf>,
}

const CONFIG: &str = "config.json";
const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";
const TOKENIZER: &str = "tokenizer.json";

impl ModelFiles {
    /// Resolves the files of a local model directory; errors name the missing file.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("model directory {} does not exist", dir.display());
        }
        let config = dir.join(CONFIG);
        if !config.is_file() {
            bail!("{}: missing {CONFIG}", dir.display());
        }
        let weights = if dir.join(INDEX).is_file() {
            shard_names(&dir.join(INDEX))?
                .into_iter()
                .map(|name| {
                    let p = dir.join(&name);
                    if p.is_file() {
                        Ok(p)
                    } else {
                        bail!(
                            "{}: shard {name} listed in {INDEX} is missing",
                            dir.display()
                        )
                    }
                })
                .collect::<Result<Vec<_>>>()?
        } else if dir.join(SINGLE).is_file() {
            vec![dir.join(SINGLE)]
        } else if dir.join("pytorch_model.bin").is_file()
            || dir.join("pytorch_model.bin.index.json").is_file()
        {
            bail!(
                "{}: only PyTorch .bin weights; mlvf reads safetensors — convert once with \
                 transformers (`AutoModel.from_pretrained(d).save_pretrained(d, safe_serialization=True)`)",
                dir.display()
            )
        } else {
            bail!("{}: no {SINGLE} and no {INDEX}", dir.display())
        };
        let tok = dir.join(TOKENIZER);
        Ok(ModelFiles {
            dir: dir.to_path_buf(),
            config,
            weights,
            tokenizer: tok.is_file().then_some(tok),
        })
    }

    /// The weight files, for error messages.
    pub fn describe_weights(&self) -> String {
        self.weights
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Loads `tokenizer.json`; a clear error when the model has none.
    pub fn load_tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        match &self.tokenizer {
            Some(p) => load_tokenizer(p),
            None if self.dir.join("tokenizer.model").is_file() => bail!(
                "{}: only a SentencePiece tokenizer.model, no {TOKENIZER}; write one once with \
                 transformers: `AutoTokenizer.from_pretrained(d).save_pretrained(d)`",
                self.dir.display()
            ),
            None => bail!(
                "{}: no {TOKENIZER} (the model needs a Hugging Face fast-tokenizer file)",
                self.dir.display()
            ),
        }
    }
}

/// Reads a `tokenizer.json` (HF tokenizers format).
pub fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    tokenizers::Tokenizer::from_file(path)
        .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", path.display()))
}

/// The distinct shard file names of a `model.safetensors.index.json`, sorted.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("cannot read {}", index.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: no `weight_map` object", index.display()))?;
    let names: BTreeSet<String> = map
        .iter()
        .map(|(k, f)| {
            f.as_str()
                .map(str::to_string)
                .with_context(|| format!("{}: weight_map[{k}] is not a file name", index.display()))
        })
        .collect::<Result<_>>()?;
    if names.is_empty() {
        bail!("{}: empty weight_map", index.display());
    }
    Ok(names.into_iter().collect())
}

/// Where Hub files come from, read once from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubEnv {
    /// The hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// `$HF_ENDPOINT`, if set.
    pub endpoint: Option<String>,
    /// `$HF_HUB_OFFLINE` is 1/true/yes/on.
    pub offline: bool,
}

impl HubEnv {
    /// Reads `HF_HUB_CACHE`, `HF_HOME`, `HOME`, `HF_ENDPOINT` and `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cache_dir =
            var("HF_HUB_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| match var("HF_HOME") {
                    Some(home) => PathBuf::from(home).join("hub"),
                    None => {
                        let home = var("HOME")
                            .map(PathBuf::from)
                            .unwrap_or_else(|| PathBuf::from("."));
                        home.join(".cache").join("huggingface").join("hub")
                    }
                });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        HubEnv {
            cache_dir,
            endpoint: var("HF_ENDPOINT"),
            offline,
        }
    }
}

/// Resolves a model reference with the process environment (see [`HubEnv`]).
pub fn resolve(reference: &str) -> Result<ModelFiles> {
    resolve_with(&ModelRef::parse(reference)?, &HubEnv::from_env())
}

/// Resolves a parsed reference: local directories directly, Hub repos from the cache (offline) or
/// by downloading what is missing.
pub fn resolve_with(model: &ModelRef, env: &HubEnv) -> Result<ModelFiles> {
    match model {
        ModelRef::Local(dir) => ModelFiles::from_dir(dir),
        ModelRef::Hub { repo, revision } => {
            let rev = revision.as_deref().unwrap_or("main");
            if env.offline {
                from_cache(repo, rev, &env.cache_dir)
            } else {
                download(repo, rev, env)
            }
        }
    }
}

/// The snapshot directory of `repo@rev` in an HF cache (`models--org--name/snapshots/<commit>`,
/// the commit read from `refs/<rev>` unless `rev` is itself a commit hash).
fn from_cache(repo: &str, rev: &str, cache: &Path) -> Result<ModelFiles> {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let hint =
        "run once without HF_HUB_OFFLINE=1 to download it, or point --model at a local directory";
    if !root.is_dir() {
        bail!(
            "HF_HUB_OFFLINE=1: {repo} is not in the Hugging Face cache (no {}); {hint}",
            root.display()
        );
    }
    let is_commit = rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit());
    let commit = if is_commit {
        rev.to_string()
    } else {
        let r = root.join("refs").join(rev);
        std::fs::read_to_string(&r)
            .map(|s| s.trim().to_string())
            .map_err(|_| anyhow::anyhow!("HF_HUB_OFFLINE=1: revision `{rev}` of {repo} is not in the cache (no {}); {hint}", r.display()))?
    };
    let snap = root.join("snapshots").join(&commit);
    if !snap.is_dir() {
        bail!(
            "HF_HUB_OFFLINE=1: {repo}@{rev} points at commit {commit}, but {} is missing; {hint}",
            snap.display()
        );
    }
    ModelFiles::from_dir(&snap).with_context(|| {
        format!("HF_HUB_OFFLINE=1: cached snapshot of {repo}@{rev} is incomplete; {hint}")
    })
}

#[cfg(feature = "hub")]
fn download(repo: &str, rev: &str, env: &HubEnv) -> Result<ModelFiles> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    use std::io::IsTerminal;
    let mut builder = ApiBuilder::from_env()
        .with_cache_dir(env.cache_dir.clone())
        .with_progress(std::io::stderr().is_terminal());
    if let Some(e) = &env.endpoint {
        builder = builder.with_endpoint(e.clone());
    }
    // hf-hub 0.4 reads only the token file; honour the environment variable too.
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
        builder = builder.with_token(Some(token));
    }
    let api = builder
        .build()
        .context("cannot set up the Hugging Face Hub client")?;
    let r = api.repo(Repo::with_revision(
        repo.to_string(),
        RepoType::Model,
        rev.to_string(),
    ));
    let endpoint = env.endpoint.as_deref().unwrap_or("https://huggingface.co");
    let get = |f: &str| {
        r.get(f).with_context(|| format!("cannot fetch {f} of {repo}@{rev} from {endpoint} (set HF_HUB_OFFLINE=1 to use the cache only)"))
    };
    let config = get(CONFIG)?;
    let dir = config
        .parent()
        .context("hub file without a parent directory")?
        .to_path_buf();
    match r.get(INDEX) {
        Ok(index) => {
            for shard in shard_names(&index)? {
                get(&shard)?;
            }
        }
        Err(_) => {
            get(SINGLE)?;
        }
    }
    // Optional: vision towers have none.
    if r.get(TOKENIZER).is_err() {
        // SentencePiece-only repos (e.g. MobileLLaMA): fetched so the tokenizer error can say how
        // to convert it.
        let _ = r.get("tokenizer.model");
    }
    ModelFiles::from_dir(&dir)
}

#[cfg(not(feature = "hub"))]
fn download(repo: &str, rev: &str, _env: &HubEnv) -> Result<ModelFiles> {
    bail!("{repo}@{rev}: this mlvf was built without the `hub` feature; download the model yourself and pass its directory")
}

/// Writes a model directory in the HF layout: `config.json`, `model.safetensors` (written to a
/// temporary name and renamed, so a crash never leaves a truncated checkpoint) and a copy of
/// `tokenizer.json` when given.
pub fn save_model_dir(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &[(String, Tensor)],
    tokenizer: Option<&Path>,
) -> Result<ModelFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let map: std::collections::HashMap<String, Tensor> = tensors.iter().cloned().collect();
    if map.len() != tensors.len() {
        bail!("duplicate tensor names when saving {}", dir.display());
    }
    crate::atomic::write_atomic_via(&dir.join(SINGLE), |tmp| {
        Ok(candle_core::safetensors::save(&map, tmp)?)
    })?;
    let text = serde_json::to_string_pretty(config)?;
    crate::atomic::write_atomic(&dir.join(CONFIG), text.as_bytes())?;
    if let Some(t) = tokenizer {
        if t != dir.join(TOKENIZER) {
            crate::atomic::write_atomic_via(&dir.join(TOKENIZER), |tmp| {
                std::fs::copy(t, tmp)?;
                Ok(())
            })
            .with_context(|| format!("cannot copy {} into {}", t.display(), dir.display()))?;
        }
    }
    ModelFiles::from_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(
            ModelRef::parse("mtgv/MobileLLaMA-1.4B-Base").unwrap(),
            ModelRef::Hub {
                repo: "mtgv/MobileLLaMA-1.4B-Base".into(),
                revision: None
            }
        );
        assert_eq!(
            ModelRef::parse("hf:org/name@v1.0").unwrap(),
            ModelRef::Hub {
                repo: "org/name".into(),
                revision: Some("v1.0".into())
            }
        );
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().to_str().unwrap();
        assert_eq!(
            ModelRef::parse(p).unwrap(),
            ModelRef::Local(tmp.path().to_path_buf())
        );
        assert!(ModelRef::parse("./no/such/dir")
            .unwrap_err()
            .to_string()
            .contains("no such directory"));
        assert!(ModelRef::parse("hf:just-a-name").is_err());
        assert!(ModelRef::parse("org/name@").is_err());
    }

    #[test]
    fn sharded_index_lists_every_shard_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join(CONFIG), "{}").unwrap();
        std::fs::write(
            d.join(INDEX),
            r#"{"metadata":{},"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        std::fs::write(d.join("model-00001-of-00002.safetensors"), b"").unwrap();
        let e = ModelFiles::from_dir(d).unwrap_err().to_string();
        assert!(
            e.contains("model-00002-of-00002.safetensors") && e.contains("missing"),
            "{e}"
        );
        std::fs::write(d.join("model-00002-of-00002.safetensors"), b"").unwrap();
        let f = ModelFiles::from_dir(d).unwrap();
        assert_eq!(
            f.weights,
            vec![
                d.join("model-00001-of-00002.safetensors"),
                d.join("model-00002-of-00002.safetensors")
            ]
        );
        assert_eq!(f.tokenizer, None);
    }

    #[test]
    fn sentencepiece_only_tokenizer_says_how_to_convert() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(CONFIG), "{}").unwrap();
        std::fs::write(tmp.path().join(SINGLE), b"").unwrap();
        std::fs::write(tmp.path().join("tokenizer.model"), b"").unwrap();
        let e = ModelFiles::from_dir(tmp.path())
            .unwrap()
            .load_tokenizer()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokenizer.model") && e.contains("save_pretrained"),
            "{e}"
        );
    }

    #[test]
    fn pytorch_bin_only_says_how_to_convert() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(CONFIG), "{}").unwrap();
        std::fs::write(tmp.path().join("pytorch_model.bin"), b"").unwrap();
        let e = ModelFiles::from_dir(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("safetensors") && e.contains("save_pretrained"),
            "{e}"
        );
    }
}

//! The LLaMA causal LM: embeddings → decoder layers (with fusion hooks) → norm → `lm_head`.
//!
//! Differentiable end to end (fused norms and softmax with our backward, `crate::model::ops`;
//! `rope_slow`), logits for every position, and the input can be embeddings so visual tokens
//! can be spliced in.

use super::attention::MASKED;
use super::cache::KvCache;
use super::config::LlamaConfig;
use super::cross_attn::CrossAttn;
use super::injection::Injections;
use super::layer::{DecoderLayer, XAttnStep};
use super::norm::RmsNorm;
use super::rope::{Positions, Rotary};
use crate::model::hub::ModelFiles;
use anyhow::{bail, Context};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder, VarMap};
use std::path::Path;

/// Per-pass inputs besides the embeddings. `Default` is a plain forward.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions<'a> {
    /// `[B, past+T]`, non-zero = real token, zero = padding (right or left). Keys at padding
    /// positions are never attended to. `None` = no padding.
    pub attention_mask: Option<&'a Tensor>,
    /// I_D: features added at the visual positions before chosen layers (skipped when the KV cache
    /// is not empty, i.e. on decode steps).
    pub injections: Option<&'a Injections>,
    /// I_M: gated cross-attention sub-blocks and their image features.
    pub cross_attn: Option<CrossAttn<'a>>,
    /// `[B, T]` positions of the new tokens (RoPE and I_M causal visibility); `None` = the KV
    /// cache length onwards for every row. Left-padded batches pass `cumsum(mask) - 1`.
    pub position_ids: Option<&'a Tensor>,
    /// Also return every layer's input hidden states.
    pub output_hidden_states: bool,
}

/// What [`Llama::forward_full`] returns.
#[derive(Clone, Debug)]
pub struct LlmOutput {
    /// `[B, T, vocab]`, f32.
    pub logits: Tensor,
    /// When requested: index `i < L` is the input of decoder layer `i` as that layer sees it
    /// (after any I_D injection; index 0 = the embeddings), index `L` the last layer's output
    /// before the final norm. Empty otherwise.
    pub hidden_states: Vec<Tensor>,
}

/// A LLaMA model with HF weight names.
#[derive(Clone, Debug)]
pub struct Llama {
    cfg: LlamaConfig,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: Rotary,
    dtype: DType,
    device: Device,
}

impl Llama {
    /// Builds the model from `vb` (rooted at the checkpoint's top level): frozen when `vb` reads
    /// safetensors, trainable when it comes from a `VarMap`.
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let m = vb.pp("model");
        let embed_tokens = candle_nn::embedding(v, h, m.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, m.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(h, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_tokens.embeddings().clone(), None)
        } else {
            candle_nn::linear_no_bias(h, v, vb.pp("lm_head"))?
        };
        Ok(Llama {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: Rotary::new(cfg),
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// Loads a checkpoint (frozen weights, memory-mapped) in `dtype` on `device`. Errors name the
    /// config file, the weight files and the missing or mis-shaped tensor.
    pub fn load(files: &ModelFiles, dtype: DType, device: &Device) -> anyhow::Result<Self> {
        let cfg = LlamaConfig::from_file(&files.config)?;
        Self::load_with_config(&cfg, files, dtype, device)
    }

    /// Like [`Llama::load`] with an already parsed config.
    pub fn load_with_config(
        cfg: &LlamaConfig,
        files: &ModelFiles,
        dtype: DType,
        device: &Device,
    ) -> anyhow::Result<Self> {
        if files.weights.is_empty() {
            bail!("{}: no safetensors weight files", files.dir.display());
        }
        // Safety: the files are memory-mapped read-only; mlvf never writes a checkpoint in place.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, device) }
            .with_context(|| format!("cannot read the weights in {}", files.describe_weights()))?;
        Llama::new(cfg, vb).with_context(|| {
            let hint = if cfg.tie_word_embeddings {
                ""
            } else {
                " (config says tie_word_embeddings = false, so `lm_head.weight` must be present)"
            };
            format!(
                "loading the LLaMA weights from {}{hint}",
                files.describe_weights()
            )
        })
    }

    /// Loads a checkpoint into a fresh `VarMap` (every weight trainable, e.g. for fine-tuning),
    /// returning the model and the map to hand to the optimiser and to save.
    pub fn load_trainable(
        files: &ModelFiles,
        dtype: DType,
        device: &Device,
    ) -> anyhow::Result<(Self, VarMap)> {
        let cfg = LlamaConfig::from_file(&files.config)?;
        let map = VarMap::new();
        let model = Llama::new(&cfg, VarBuilder::from_varmap(&map, dtype, device))?;
        let mut missing: std::collections::BTreeSet<String> =
            map.data().lock().unwrap().keys().cloned().collect();
        for file in &files.weights {
            let tensors = candle_core::safetensors::load(file, device)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let vars = map.data().lock().unwrap();
            for (name, t) in tensors {
                let Some(var) = vars.get(&name) else { continue };
                if t.dims() != var.dims() {
                    bail!(
                        "{}: tensor {name} has shape {:?}, the config implies {:?}",
                        file.display(),
                        t.dims(),
                        var.dims()
                    );
                }
                var.set(&t.to_dtype(dtype)?)?;
                missing.remove(&name);
            }
        }
        if let Some(name) = missing.iter().next() {
            bail!(
                "{}: cannot find tensor {name} ({} missing in all)",
                files.describe_weights(),
                missing.len()
            );
        }
        Ok((model, map))
    }

    /// The validated configuration the model was built from.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The dtype of the weights and of the hidden states between layers.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token embeddings `[B, T, H]` of ids `[B, T]` (u32).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.forward(ids)
    }

    /// A fresh KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.num_hidden_layers)
    }

    /// Logits `[B, T, vocab]` (f32) for token ids `[B, T]`, no hooks.
    pub fn forward_ids(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> anyhow::Result<Tensor> {
        self.forward_embeds(&self.embed(ids)?, &ForwardOptions::default(), cache)
    }

    /// Logits `[B, T, vocab]` (f32) for every position of `embeds` `[B, T, H]`.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        opts: &ForwardOptions<'_>,
        cache: Option<&mut KvCache>,
    ) -> anyhow::Result<Tensor> {
        Ok(self.forward_full(embeds, opts, cache)?.logits)
    }

    /// The last layer's output after the final norm, `[B, T, H]`.
    pub fn forward_hidden(
        &self,
        embeds: &Tensor,
        opts: &ForwardOptions<'_>,
        cache: Option<&mut KvCache>,
    ) -> anyhow::Result<Tensor> {
        let (h, _) = self.run_layers(embeds, opts, cache)?;
        Ok(self.norm.forward(&h)?)
    }

    /// Logits (f32) from final-normed hidden states `[.., H]`, e.g. only the positions a caller
    /// needs (generation reads one position, not the whole prompt's `T × vocab`).
    pub fn lm_logits(&self, normed_hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(normed_hidden)?.to_dtype(DType::F32)
    }

    /// The forward pass with everything it can return.
    pub fn forward_full(
        &self,
        embeds: &Tensor,
        opts: &ForwardOptions<'_>,
        cache: Option<&mut KvCache>,
    ) -> anyhow::Result<LlmOutput> {
        let (h, hidden_states) = self.run_layers(embeds, opts, cache)?;
        let logits = self
            .lm_head
            .forward(&self.norm.forward(&h)?)?
            .to_dtype(DType::F32)?;
        Ok(LlmOutput {
            logits,
            hidden_states,
        })
    }

    fn run_layers(
        &self,
        embeds: &Tensor,
        opts: &ForwardOptions<'_>,
        mut cache: Option<&mut KvCache>,
    ) -> anyhow::Result<(Tensor, Vec<Tensor>)> {
        let (b, t, hsz) = embeds
            .dims3()
            .context("LLM input embeddings must be [batch, seq, hidden]")?;
        if hsz != self.cfg.hidden_size {
            bail!(
                "LLM input embeddings have width {hsz}, the model's hidden size is {}",
                self.cfg.hidden_size
            );
        }
        let past = cache.as_ref().map_or(0, |c| c.len());
        static WARNED: std::sync::Once = std::sync::Once::new();
        if past + t > self.cfg.max_position_embeddings {
            // Once per process: a long generation would otherwise warn at every step.
            WARNED.call_once(|| {
                tracing::warn!(
                    "sequence of {} positions exceeds max_position_embeddings = {}",
                    past + t,
                    self.cfg.max_position_embeddings
                )
            });
        }
        let mask = self.self_attn_mask(b, t, past, opts.attention_mask)?;
        let positions = match opts.position_ids {
            None => Positions::Range {
                start: past,
                len: t,
            },
            Some(p) => {
                if p.dims() != [b, t] {
                    bail!(
                        "position_ids has shape {:?}; expected [batch, seq] = [{b}, {t}]",
                        p.dims()
                    );
                }
                Positions::Rows(p.to_dtype(DType::U32)?.to_vec2()?)
            }
        };
        let (cos, sin) = self.rotary.cos_sin(&positions, self.dtype, &self.device)?;
        if let Some(x) = &opts.cross_attn {
            x.check()?;
        }
        let inject = if past == 0 { opts.injections } else { None };
        if let Some(inj) = inject {
            if let Some(l) = inj.layers().find(|&l| l >= self.layers.len()) {
                bail!(
                    "I_D injection into layer {l}, but the LLM has only {} layers",
                    self.layers.len()
                );
            }
        }
        let mut h = embeds.to_dtype(self.dtype)?;
        let mut hidden_states = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(inj) = inject {
                h = inj.apply(i, &h)?;
            }
            if opts.output_hidden_states {
                hidden_states.push(h.clone());
            }
            let sub_block = opts
                .cross_attn
                .as_ref()
                .and_then(|x| x.blocks.get(i).map(|b| (x, b)));
            h = match sub_block {
                None => {
                    let slot = cache.as_deref_mut().map(|c| &mut c.self_attn[i]);
                    layer
                        .forward(&h, &cos, &sin, mask.as_ref(), slot, None)
                        .with_context(|| format!("decoder layer {i}"))?
                }
                Some((x, block)) => {
                    let feats = &x.inputs.by_layer[&i];
                    // The projected image keys/values do not change between decode steps.
                    let kv = match cache.as_ref().and_then(|c| c.cross_attn[i].clone()) {
                        Some(kv) => kv,
                        None => {
                            let kv = block
                                .project_kv(feats)
                                .with_context(|| format!("I_M features of layer {i}"))?;
                            if let Some(c) = cache.as_deref_mut() {
                                c.cross_attn[i] = Some((kv.0.detach(), kv.1.detach()));
                            }
                            kv
                        }
                    };
                    let xmask = x.blocks.mask(&positions, feats.dim(1)?, &self.device)?;
                    let step = XAttnStep {
                        block,
                        placement: x.blocks.config().placement,
                        kv: &kv,
                        mask: xmask.as_ref(),
                    };
                    let slot = cache.as_deref_mut().map(|c| &mut c.self_attn[i]);
                    layer
                        .forward(&h, &cos, &sin, mask.as_ref(), slot, Some(step))
                        .with_context(|| format!("decoder layer {i} (with I_M sub-block)"))?
                }
            };
        }
        if opts.output_hidden_states {
            hidden_states.push(h.clone());
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        Ok((h, hidden_states))
    }

    /// Additive f32 mask `[B|1, 1, T, past+T]`: causal, plus padding from `attention_mask`.
    fn self_attn_mask(
        &self,
        b: usize,
        t: usize,
        past: usize,
        attention_mask: Option<&Tensor>,
    ) -> anyhow::Result<Option<Tensor>> {
        let s = past + t;
        let causal = if t > 1 {
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..s).map(move |j| if j <= past + i { 0.0 } else { MASKED }))
                .collect();
            Some(Tensor::from_vec(m, (1, 1, t, s), &self.device)?)
        } else {
            None
        };
        let Some(am) = attention_mask else {
            return Ok(causal);
        };
        let dims = am.dims();
        if dims != [b, s] {
            bail!("attention_mask has shape {dims:?}; expected [batch, past + seq] = [{b}, {s}]");
        }
        // keep = 1 → 0, pad = 0 → MASKED.
        let keep = am.ne(0u32 as f64)?.to_dtype(DType::F32)?;
        let pad = ((keep - 1.0)? * (-(MASKED as f64)))?.reshape((b, 1, 1, s))?;
        Ok(Some(match causal {
            Some(c) => pad.broadcast_add(&c)?,
            None => pad,
        }))
    }

    /// Every weight under its HF name (`lm_head.weight` only when untied), for saving.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed_tokens.embeddings().clone(),
        )];
        for (i, l) in self.layers.iter().enumerate() {
            l.named_tensors(&format!("model.layers.{i}"), &mut out);
        }
        out.push(("model.norm.weight".to_string(), self.norm.weight().clone()));
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.weight().clone()));
        }
        out
    }

    /// Writes the HF layout into `dir`: config.json, model.safetensors and, when given, a copy of
    /// tokenizer.json. Loading `dir` again gives the same model.
    pub fn save(&self, dir: &Path, tokenizer: Option<&Path>) -> anyhow::Result<ModelFiles> {
        crate::model::hub::save_model_dir(
            dir,
            &self.cfg.to_json(),
            &self.named_tensors(),
            tokenizer,
        )
    }
}

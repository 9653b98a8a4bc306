"""PyTorch eager reference for the model benchmarks (benches/vision.rs, benches/llm.rs).

Times the same shapes with HF transformers on the CPU, f32, so BENCHMARKS.md can report mlvf's figures
as a ratio to PyTorch eager measured on the same machine in the same session:

  * one CLIP ViT-L/14-336-shaped layer, forward, batch 1 (577 tokens, width 1024, MLP 4096, 16 heads)
  * one MobileLLaMA-1.4B-shaped decoder layer, forward + backward of the mean logit, batch 1, 256 tokens
    (hidden 2048, FFN 5632, 16 heads, vocabulary 1024), every weight trainable
  * greedy decode time per token with the KV cache at position 32 and 512 (hidden 1024, FFN 2816,
    16 heads, 4 layers, vocabulary 1024)

Usage: python3 benches/pytorch_reference.py [--threads 2] [--repeats 5]
Prints one JSON object. Needs torch and transformers (pip install torch transformers).
"""

import argparse
import json
import statistics
import sys
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM


def median_time(fn, repeats, warmup=1):
    print(f"  timing {getattr(fn, '__qualname__', fn)} ×{repeats}", file=sys.stderr, flush=True)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def clip_layer(repeats):
    cfg = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=1, num_attention_heads=16,
        image_size=336, patch_size=14, hidden_act="quick_gelu", attn_implementation="eager",
    )
    model = CLIPVisionModel(cfg).eval()
    px = torch.randn(1, 3, 336, 336)
    with torch.no_grad():
        return median_time(lambda: model(px, output_hidden_states=True), repeats)


def llama(hidden, ffn, heads, layers):
    cfg = LlamaConfig(
        hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads, vocab_size=1024, max_position_embeddings=4096,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(cfg)


def llama_train_step(repeats):
    model = llama(2048, 5632, 16, 1).train()
    ids = torch.randint(0, 1024, (1, 256))

    def step():
        model.zero_grad(set_to_none=True)
        model(ids).logits.mean().backward()

    return median_time(step, repeats)


def decode_per_token(pos, repeats):
    model = llama(1024, 2816, 16, 4).eval()
    ids = torch.randint(0, 1024, (1, pos))
    tok = torch.randint(0, 1024, (1, 1))
    with torch.no_grad():
        out = model(ids, use_cache=True)
        cache = out.past_key_values

        def one():
            # Decode one token at position `pos` on a copy-free cache: crop back after each step.
            model(tok, past_key_values=cache, use_cache=True)
            cache.crop(-1)

        return median_time(one, repeats * 4, warmup=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    n = 1024
    x = torch.randn(n, n)
    sgemm = median_time(lambda: x @ x, 10)
    res = {
        "torch": torch.__version__,
        "threads": a.threads,
        "sgemm_1024_gflops": 2 * n**3 / sgemm / 1e9,
        "clip_l_layer_forward_s": clip_layer(a.repeats),
        "mobilellama_layer_train_step_s": llama_train_step(a.repeats),
        "decode_ms_pos32": decode_per_token(32, a.repeats) * 1e3,
        "decode_ms_pos512": decode_per_token(512, a.repeats) * 1e3,
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

"""Writes tests/fusion_msdeform_reference.safetensors: an E_M (MMFuser) module with random
weights, random vision hidden states and the output PyTorch computes for them.

The reference follows Deformable-DETR's pure-PyTorch `ms_deform_attn_core_pytorch` (sampling
with `F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`) and
`MSDeformAttn.forward`, wrapped in the MMFuser block of paper.md §1.2 and LLaVA's mlp2x_gelu.
Tensor names are mlvf's (see src/model/fusion). Rerun with: python3 tests/fusion_msdeform_reference.py
"""
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
B, SIDE, DV, D, HEADS, POINTS = 2, 5, 8, 6, 2, 3
DEPTH = 6           # tiny encoder: hidden states 0..6, base 5
BASE, LEVELS = 5, [1, 4]   # what mlvf's resolve() gives for "3-18-23" at depth 6
N = SIDE * SIDE
L = len(LEVELS)
EPS = 1e-6
t = {}


def lin(name, i, o, scale):
    t[f"{name}.weight"] = (torch.rand(o, i) * 2 - 1) * scale
    t[f"{name}.bias"] = (torch.rand(o) * 2 - 1) * scale
    return lambda x: F.linear(x, t[f"{name}.weight"], t[f"{name}.bias"])


def ln(name):
    t[f"{name}.weight"] = 1 + (torch.rand(DV) * 2 - 1) * 0.2
    t[f"{name}.bias"] = (torch.rand(DV) * 2 - 1) * 0.2
    return lambda x: F.layer_norm(x, (DV,), t[f"{name}.weight"], t[f"{name}.bias"], EPS)


def core(value, shapes, locs, attn):
    n, s, m, dh = value.shape
    _, lq, m, nl, p, _ = locs.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locs - 1
    out = []
    for lid, (h, w) in enumerate(shapes):
        v = values[lid].flatten(2).transpose(1, 2).reshape(n * m, dh, h, w)
        g = grids[:, :, :, lid].transpose(1, 2).flatten(0, 1)
        out.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    attn = attn.transpose(1, 2).reshape(n * m, 1, lq, nl * p)
    o = (torch.stack(out, dim=-2).flatten(-2) * attn).sum(-1).view(n, m * dh, lq)
    return o.transpose(1, 2).contiguous()


def msdeform(name, levels):
    offs = lin(f"{name}.sampling_offsets", DV, HEADS * levels * POINTS * 2, 0.3)
    t[f"{name}.sampling_offsets.bias"] = (torch.rand(HEADS * levels * POINTS * 2) * 2 - 1) * 2.5
    aw = lin(f"{name}.attention_weights", DV, HEADS * levels * POINTS, 0.5)
    vp = lin(f"{name}.value_proj", DV, DV, 0.5)
    op = lin(f"{name}.output_proj", DV, DV, 0.5)

    def fwd(query, refs, inp):
        n, lq, _ = query.shape
        value = vp(inp).view(n, inp.shape[1], HEADS, DV // HEADS)
        so = offs(query).view(n, lq, HEADS, levels, POINTS, 2)
        a = F.softmax(aw(query).view(n, lq, HEADS, levels * POINTS), -1).view(n, lq, HEADS, levels, POINTS)
        shapes = [(SIDE, SIDE)] * levels
        norm = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float32)
        loc = refs[:, :, None, :, None, :] + so / norm[None, None, None, :, None, :]
        return op(core(value, shapes, loc, a))
    return fwd


qn, fn, n1 = ln("mm_fuser.query_norm"), ln("mm_fuser.feat_norm"), ln("mm_fuser.norm1")
cross, selfa = msdeform("mm_fuser.cross_attn", L), msdeform("mm_fuser.self_attn", 1)
t["mm_fuser.gamma1"] = (torch.rand(DV) * 2 - 1)
t["mm_fuser.gamma2"] = (torch.rand(DV) * 2 - 1)
p0, p2 = lin("mm_projector.0", DV, D, 0.4), lin("mm_projector.2", D, D, 0.4)

hidden = [torch.rand(B, N, DV) * 2 - 1 for _ in range(DEPTH + 1)]
ys, xs = torch.meshgrid(torch.linspace(0.5, SIDE - 0.5, SIDE), torch.linspace(0.5, SIDE - 0.5, SIDE), indexing="ij")
ref = torch.stack((xs.reshape(-1) / SIDE, ys.reshape(-1) / SIDE), -1)[None].expand(B, N, 2)

with torch.no_grad():
    base = hidden[BASE]
    feats = torch.cat([hidden[k] for k in LEVELS], 1)
    a = cross(qn(base), ref[:, :, None].expand(B, N, L, 2), fn(feats))
    an = n1(a)
    a = a + t["mm_fuser.gamma2"] * selfa(an, ref[:, :, None], an)
    out = base + t["mm_fuser.gamma1"] * a
    x = p2(F.gelu(p0(out)))

for k, h in enumerate(hidden):
    t[f"test.hidden_states.{k}"] = h
t["test.expected"] = x
save_file({k: v.contiguous().float() for k, v in t.items()}, "tests/fusion_msdeform_reference.safetensors")
print("wrote", len(t), "tensors; output norm", x.norm().item())

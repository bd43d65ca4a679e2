#!/usr/bin/env python3
"""PyTorch reference for ratlip's generator / discriminator (MODEL.md §1, §3, §4; contract in
MODEL_KEYS.md). Writes the parity fixtures the Rust tests compare against.

Three architectures from one config JSON (the "ratlip_config" of a ratlip model file):
  galip           tobran/GALIP's NetG/NetD/NetC (plain affines, plain convs)
  ratlip-release  OxygenLu/RATLIP's released layout: every bridge affine owns an nn.LSTM run one
                  step from a zero state, conv2 of the bridge blocks and c1/c2 of the image blocks
                  are Conv_shuffle (conv -> BN -> LeakyReLU(0.01) -> ShuffleAttention).  Per-sample
                  semantics (the released code feeds the batch as ONE sequence; identical at batch 1,
                  asserted below).
  ratlip          the paper's RAT: one shared LSTMCell (mapping.rat.*) carried across the 16 bridge
                  affines, h0/c0 = Linear(z); Conv_shuffle as in ratlip-release.
State-dict names are the released code's (galip, ratlip-release), so a released checkpoint loads
with load_state_dict(strict=True).  CLIP is a small OpenAI-layout CLIP written here (OpenAI names,
nn.MultiheadAttention, QuickGELU); the G mapper holds its visual weights as mapping.CLIP_ViT.*.

Every parameter and buffer is overwritten with random values of sensible scale (init values such
as zero last layers would hide bugs).  Everything runs in float32, single-threaded, deterministic.

  /work/venv-ref/bin/python tools/reference/model_reference.py                # tiny -> tests/fixtures/model_tiny
  /work/venv-ref/bin/python tools/reference/model_reference.py --config full --out /tmp/model_full
Options: --arch galip|ratlip|ratlip-release|all (default all), --seed N (default 0).

Outputs per arch (see MODEL_KEYS.md): {arch}.safetensors (model file), {arch}_reference.safetensors,
{arch}_release.pth (galip, ratlip-release), and clip_openai.safetensors.
"""
import argparse
import copy
import json
import math
import os
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import struct

ARCHS = ["galip", "ratlip", "ratlip-release"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

def tiny_config(arch):
    return OrderedDict([
        ("arch", arch), ("z_dim", 8), ("cond_dim", 16), ("ngf", 16), ("image_size", 24), ("image_blocks", 3),
        ("code_ch", 16), ("mid_ch", 8), ("bridge_blocks", 4), ("lstm_hidden", 8), ("sa_groups", 8),
        ("prompts", 8), ("d_out", 16), ("netc_hidden", 8), ("clip_features", [1, 4, 8]),
        ("clip", OrderedDict([
            ("text", OrderedDict([("width", 32), ("layers", 1), ("heads", 2), ("context_length", 77),
                                  ("vocab_size", 1000)])),
            ("vision", OrderedDict([("width", 32), ("layers", 9), ("heads", 2), ("patch_size", 4),
                                    ("image_size", 28)])),
            ("embed_dim", 16), ("layer_norm_eps", 1e-5)])),
    ])


def full_config(arch):
    return OrderedDict([
        ("arch", arch), ("z_dim", 100), ("cond_dim", 512), ("ngf", 64), ("image_size", 224), ("image_blocks", 6),
        ("code_ch", 64), ("mid_ch", 32), ("bridge_blocks", 4), ("lstm_hidden", 64), ("sa_groups", 8),
        ("prompts", 8), ("d_out", 512), ("netc_hidden", 128), ("clip_features", [1, 4, 8]),
        ("clip", OrderedDict([
            ("text", OrderedDict([("width", 512), ("layers", 12), ("heads", 8), ("context_length", 77),
                                  ("vocab_size", 49408)])),
            ("vision", OrderedDict([("width", 768), ("layers", 12), ("heads", 12), ("patch_size", 32),
                                    ("image_size", 224)])),
            ("embed_dim", 512), ("layer_norm_eps", 1e-5)])),
    ])


def save_file(tensors, path, metadata=None):
    """safetensors writer with a byte-stable header (sorted keys; safetensors' own writer orders the
    metadata map differently from run to run).  f32 only."""
    header, chunks, off = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        assert t.dtype == torch.float32, (name, t.dtype)
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in chunks:
            f.write(b)


def config_json(cfg):
    return json.dumps(cfg, separators=(",", ":"))


def grid_of(cfg):
    v = cfg["clip"]["vision"]
    return v["image_size"] // v["patch_size"]


def g_channels(cfg):
    n = cfg["image_blocks"]
    chans = [cfg["ngf"] * min(2 ** i, 8) for i in range(n + 1)][::-1]
    sizes = [8 * 2 ** i if i < n - 1 else cfg["image_size"] for i in range(n)]
    return list(zip(chans[:-1], chans[1:], sizes))


def check_config(cfg):
    assert cfg["arch"] in ARCHS, cfg["arch"]
    v = cfg["clip"]["vision"]
    assert cfg["image_blocks"] >= 3
    assert cfg["cond_dim"] == cfg["clip"]["embed_dim"]
    assert grid_of(cfg) >= 7
    assert v["layers"] > cfg["prompts"] and v["layers"] > max(cfg["clip_features"])
    if cfg["arch"] != "galip":
        chans = [cfg["code_ch"]] + [c for i, o, _ in g_channels(cfg) for c in (o,)]
        for c in chans:
            assert c % (2 * cfg["sa_groups"]) == 0, c


# ----------------------------------------------------------------------------------------------
# CLIP (OpenAI layout)
# ----------------------------------------------------------------------------------------------

class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, eps):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = nn.LayerNorm(width, eps=eps)

    def forward(self, x, mask=None):  # x [L, N, W]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, eps):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, eps) for _ in range(layers)])


class VisionTransformer(nn.Module):
    def __init__(self, v, embed_dim, eps):
        super().__init__()
        w, g = v["width"], v["image_size"] // v["patch_size"]
        self.conv1 = nn.Conv2d(3, w, v["patch_size"], v["patch_size"], bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(g * g + 1, w))
        self.ln_pre = nn.LayerNorm(w, eps=eps)
        self.transformer = Transformer(w, v["layers"], v["heads"], eps)
        self.ln_post = nn.LayerNorm(w, eps=eps)
        self.proj = nn.Parameter(torch.zeros(w, embed_dim))


class CLIP(nn.Module):
    def __init__(self, c):
        super().__init__()
        t, eps = c["text"], c["layer_norm_eps"]
        self.transformer = Transformer(t["width"], t["layers"], t["heads"], eps)
        self.token_embedding = nn.Embedding(t["vocab_size"], t["width"])
        self.positional_embedding = nn.Parameter(torch.zeros(t["context_length"], t["width"]))
        self.ln_final = nn.LayerNorm(t["width"], eps=eps)
        self.text_projection = nn.Parameter(torch.zeros(t["width"], c["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.visual = VisionTransformer(c["vision"], c["embed_dim"], eps)

    def encode_text(self, ids):
        x = self.token_embedding(ids) + self.positional_embedding
        T = ids.shape[1]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = x.permute(1, 0, 2)
        for blk in self.transformer.resblocks:
            x = blk(x, mask)
        x = self.ln_final(x.permute(1, 0, 2))
        return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ self.text_projection, x


def clip_preprocess(img, size):
    """The released GALIP/RATLIP preprocessing (rescales twice; MODEL.md §2)."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = F.interpolate(img * 0.5 + 0.5, size=(size, size))  # nearest
    return ((x + 1) * 0.5 - mean) / std


def clip_image_features(clip, img, selected):
    """CLIP_IMG_ENCODER: token maps after blocks `selected` -> [B, len, W, g, g], image embedding."""
    vis = clip.visual
    size = vis.conv1.kernel_size[0] * math.isqrt(vis.positional_embedding.shape[0] - 1)
    x = vis.conv1(clip_preprocess(img, size))
    B, W, g, _ = x.shape
    x = x.reshape(B, W, g * g).permute(0, 2, 1)
    x = torch.cat([vis.class_embedding.expand(B, 1, W), x], 1) + vis.positional_embedding
    x = vis.ln_pre(x).permute(1, 0, 2)
    feats = []
    for i, blk in enumerate(vis.transformer.resblocks):
        x = blk(x)
        if i in selected:
            feats.append(x.permute(1, 0, 2)[:, 1:, :].permute(0, 2, 1).reshape(B, W, g, g))
    x = x.permute(1, 0, 2)
    emb = vis.ln_post(x[:, 0, :]) @ vis.proj
    return torch.stack(feats, 1), emb


class CLIPMapper(nn.Module):
    """GALIP's CLIP_Mapper (MODEL.md §3). Shares CLIP's visual parameters (frozen)."""

    def __init__(self, visual, prompts):
        super().__init__()
        self.conv1 = visual.conv1
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.ln_pre = visual.ln_pre
        self.transformer = visual.transformer
        self.n_prompts = prompts

    def forward(self, fused, prompts):
        B, W, g, _ = fused.shape
        x = fused.reshape(B, W, g * g).permute(0, 2, 1)
        x = torch.cat([self.class_embedding.expand(B, 1, W), x], 1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        for i, blk in enumerate(self.transformer.resblocks):
            if 1 <= i <= self.n_prompts:
                x = torch.cat([x, prompts[:, i - 1, :].unsqueeze(0)], 0)
                x = blk(x)[:-1]
            else:
                x = blk(x)
        return x.permute(1, 0, 2)[:, 1:, :].permute(0, 2, 1).reshape(B, W, g, g)


# ----------------------------------------------------------------------------------------------
# Generator pieces
# ----------------------------------------------------------------------------------------------

def lrelu(x):
    return F.leaky_relu(x, 0.2)


def modulate(x, gamma, beta):
    return gamma[:, :, None, None] * x + beta[:, :, None, None]


class Affine(nn.Module):
    """GALIP affine: gamma/beta = Linear(cond->C) -> ReLU -> Linear(C->C) (keys linear1/linear2)."""

    def __init__(self, cond, C):
        super().__init__()
        mk = lambda: nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(cond, C)), ("relu1", nn.ReLU()), ("linear2", nn.Linear(C, C))]))
        self.fc_gamma, self.fc_beta = mk(), mk()

    def forward(self, x, y, ctx):
        return modulate(x, self.fc_gamma(y), self.fc_beta(y))


class AffineH(nn.Module):
    """RAT affine: gamma/beta = Linear(H->C) -> ReLU -> Linear(C->C) (keys .0/.2) on an LSTM hidden.
    own_rnn: ratlip-release (own nn.LSTM, one step from zero); else the shared RAT cell (ctx)."""

    def __init__(self, cond, C, H, own_rnn):
        super().__init__()
        if own_rnn:
            self.rnn = nn.LSTM(cond, H, batch_first=True)
        mk = lambda: nn.Sequential(nn.Linear(H, C), nn.ReLU(), nn.Linear(C, C))
        self.fc_gamma, self.fc_beta = mk(), mk()

    def forward(self, x, y, ctx):
        if hasattr(self, "rnn"):
            if ctx.get("released_batching"):
                # the released code: the whole batch is ONE sequence; its last h serves every sample
                _, (h, _) = self.rnn(y.unsqueeze(0))
                h = h.squeeze(0).expand(y.shape[0], -1)
            else:
                _, (h, _) = self.rnn(y.unsqueeze(1))  # B sequences of length 1
                h = h.squeeze(0)
        else:
            h = ctx["rat"].step(y)
        return modulate(x, self.fc_gamma(h), self.fc_beta(h))


class DFBLK(nn.Module):
    def __init__(self, make):
        super().__init__()
        self.affine0, self.affine1 = make(), make()

    def forward(self, x, y, ctx):
        return lrelu(self.affine1(lrelu(self.affine0(x, y, ctx)), y, ctx))


class ShuffleAttention(nn.Module):
    """fightingcv_attention's ShuffleAttention (MODEL.md §4)."""

    def __init__(self, channel, G):
        super().__init__()
        c = channel // (2 * G)
        self.G = G
        self.gn = nn.GroupNorm(c, c)
        self.cweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, c, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b * self.G, -1, h, w)
        x0, x1 = x.chunk(2, dim=1)
        a = x0.mean(dim=(2, 3), keepdim=True)
        x0 = x0 * torch.sigmoid(self.cweight * a + self.cbias)
        x1 = x1 * torch.sigmoid(self.sweight * self.gn(x1) + self.sbias)
        out = torch.cat([x0, x1], 1).reshape(b, c, h, w)
        return out.reshape(b, 2, c // 2, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)


class ConvShuffle(nn.Module):
    """RATLIP's Conv_shuffle: conv (no bias) -> BatchNorm2d -> LeakyReLU(0.01) -> ShuffleAttention."""

    def __init__(self, cin, cout, G):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU()
        self.se = ShuffleAttention(cout, G)

    def forward(self, x):
        return self.se(self.act(self.bn(self.conv(x))))


def conv3(cfg, cin, cout):
    if cfg["arch"] == "galip":
        return nn.Conv2d(cin, cout, 3, 1, 1)
    return ConvShuffle(cin, cout, cfg["sa_groups"])


class MBlock(nn.Module):
    def __init__(self, cfg, cin, cond):
        super().__init__()
        mid, out, H = cfg["mid_ch"], cfg["code_ch"], cfg["lstm_hidden"]
        if cfg["arch"] == "galip":
            make = lambda C: (lambda: Affine(cond, C))
        else:
            own = cfg["arch"] == "ratlip-release"
            make = lambda C: (lambda: AffineH(cond, C, H, own))
        self.conv1 = nn.Conv2d(cin, mid, 3, 1, 1)
        self.fuse1 = DFBLK(make(mid))
        self.conv2 = conv3(cfg, mid, out)
        self.fuse2 = DFBLK(make(out))
        if cin != out:
            self.c_sc = nn.Conv2d(cin, out, 1)

    def forward(self, x, y, ctx):
        h = self.fuse2(self.conv2(self.fuse1(self.conv1(x), y, ctx)), y, ctx)
        sc = self.c_sc(x) if hasattr(self, "c_sc") else x
        return sc + h


class RAT(nn.Module):
    """The paper's recurrent affine transformation: one LSTMCell shared by all bridge affines."""

    def __init__(self, z, cond, H):
        super().__init__()
        self.h0 = nn.Linear(z, H)
        self.c0 = nn.Linear(z, H)
        self.cell = nn.LSTMCell(cond, H)


class RatState:
    def __init__(self, rat, z):
        self.rat, self.h, self.c = rat, rat.h0(z), rat.c0(z)

    def step(self, y):
        self.h, self.c = self.rat.cell(y, (self.h, self.c))
        return self.h


class CLIPAdapter(nn.Module):
    def __init__(self, cfg, clip):
        super().__init__()
        cond = cfg["z_dim"] + cfg["cond_dim"]
        W = cfg["clip"]["vision"]["width"]
        self.W, self.z_dim = W, cfg["z_dim"]
        self.FBlocks = nn.ModuleList([MBlock(cfg, cfg["code_ch"], cond) for _ in range(cfg["bridge_blocks"])])
        self.conv_fuse = nn.Conv2d(cfg["code_ch"], W, 5, 1, 2)
        self.CLIP_ViT = CLIPMapper(clip.visual, cfg["prompts"])
        self.conv = nn.Conv2d(W, 8 * cfg["ngf"], 5, 1, 2)
        self.fc_prompt = nn.Linear(cond, W * cfg["prompts"])
        if cfg["arch"] == "ratlip":
            self.rat = RAT(cfg["z_dim"], cond, cfg["lstm_hidden"])

    def forward(self, out, c, ctx):
        ctx = dict(ctx)
        if hasattr(self, "rat"):
            ctx["rat"] = RatState(self.rat, c[:, :self.z_dim])
        prompts = self.fc_prompt(c).view(c.shape[0], -1, self.W)
        for fb in self.FBlocks:
            out = fb(out, c, ctx)
        fuse = self.conv_fuse(out)
        return self.conv(fuse + 0.1 * self.CLIP_ViT(fuse, prompts))


class GBlock(nn.Module):
    def __init__(self, cfg, cond, cin, cout, size):
        super().__init__()
        self.size = size
        self.c1 = conv3(cfg, cin, cout)
        self.c2 = conv3(cfg, cout, cout)
        self.fuse1 = DFBLK(lambda: Affine(cond, cin))
        self.fuse2 = DFBLK(lambda: Affine(cond, cout))
        if cin != cout:
            self.c_sc = nn.Conv2d(cin, cout, 1)

    def forward(self, x, y, ctx):
        x = F.interpolate(x, size=(self.size, self.size))  # nearest
        h = self.c2(self.fuse2(self.c1(self.fuse1(x, y, ctx)), y, ctx))
        sc = self.c_sc(x) if hasattr(self, "c_sc") else x
        return sc + h


class NetG(nn.Module):
    def __init__(self, cfg, clip):
        super().__init__()
        cond = cfg["z_dim"] + cfg["cond_dim"]
        self.g, self.code_ch = grid_of(cfg), cfg["code_ch"]
        self.fc_code = nn.Linear(cfg["z_dim"], self.g * self.g * self.code_ch)
        self.mapping = CLIPAdapter(cfg, clip)
        self.GBlocks = nn.ModuleList([GBlock(cfg, cond, i, o, s) for i, o, s in g_channels(cfg)])
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(cfg["ngf"], 3, 3, 1, 1))

    def forward(self, noise, sent, released_batching=False):
        ctx = {"released_batching": released_batching}
        cond = torch.cat([noise, sent], 1)
        out = self.fc_code(noise).view(noise.shape[0], self.code_ch, self.g, self.g)
        out = self.mapping(out, cond, ctx)
        for gb in self.GBlocks:
            out = gb(out, cond, ctx)
        return self.to_rgb(out)


class DBlock(nn.Module):
    def __init__(self, fin, fout, clip_feat):
        super().__init__()
        self.conv_r = nn.Sequential(nn.Conv2d(fin, fout, 3, 1, 1, bias=False), nn.LeakyReLU(0.2),
                                    nn.Conv2d(fout, fout, 3, 1, 1, bias=False), nn.LeakyReLU(0.2))
        self.conv_s = nn.Conv2d(fin, fout, 1)  # always built, used only when fin != fout
        self.gamma = nn.Parameter(torch.zeros(1))
        if clip_feat:
            self.beta = nn.Parameter(torch.zeros(1))
        self.shortcut = fin != fout

    def forward(self, x, f=None):
        res = self.conv_r(x)
        if self.shortcut:
            x = self.conv_s(x)
        out = x + self.gamma * res
        return out + self.beta * f if f is not None else out


class NetD(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        W = cfg["clip"]["vision"]["width"]
        self.DBlocks = nn.ModuleList([DBlock(W, W, True) for _ in range(len(cfg["clip_features"]) - 1)])
        self.main = DBlock(W, cfg["d_out"], False)

    def forward(self, h):
        out = h[:, 0]
        for i, blk in enumerate(self.DBlocks):
            out = blk(out, h[:, i + 1])
        return self.main(out)


class NetC(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cond_dim = cfg["cond_dim"]
        self.joint_conv = nn.Sequential(
            nn.Conv2d(cfg["d_out"] + cfg["cond_dim"], cfg["netc_hidden"], 4, 1, 0, bias=False),
            nn.LeakyReLU(0.2), nn.Conv2d(cfg["netc_hidden"], 1, 4, 1, 0, bias=False))

    def forward(self, out, sent):
        c = sent.view(-1, self.cond_dim, 1, 1).repeat(1, 1, out.shape[2], out.shape[3])
        return self.joint_conv(torch.cat([out, c], 1))


def build(cfg, random=True):
    """CLIP, NetG, NetD, NetC. random: CLIP randomised right after it is built (so a seed gives the
    same CLIP whatever the arch), then the GAN nets after theirs."""
    check_config(cfg)
    clip = CLIP(cfg["clip"])
    if random:
        randomize_clip(clip)
    for p in clip.parameters():
        p.requires_grad_(False)
    netG, netD, netC = NetG(cfg, clip), NetD(cfg), NetC(cfg)
    if random:
        randomize(netG, netD, netC)
    return clip, netG, netD, netC


# ----------------------------------------------------------------------------------------------
# Random weights
# ----------------------------------------------------------------------------------------------

def fp16_names(name):
    """Tensors that clip.load(device='cuda') (convert_weights) stores as fp16."""
    return (name.endswith("conv1.weight") or ".attn." in name or ".mlp." in name
            or name in ("text_projection", "visual.proj"))


def rn(t, s):
    return torch.randn_like(t) * s


def fan_in_w(p):
    return rn(p, 1.0 / math.sqrt(p[0].numel()))


@torch.no_grad()
def randomize_clip(clip):
    for name, p in clip.named_parameters():
        if name == "logit_scale":
            continue
        if "." in name and name.split(".")[-2].startswith("ln_"):
            p.copy_(1 + rn(p, 0.1) if name.endswith("weight") else rn(p, 0.05))
        elif name in ("text_projection", "visual.proj"):
            p.copy_(rn(p, 1.0 / math.sqrt(p.shape[0])))
        elif "embedding" in name:
            p.copy_(rn(p, 0.5))
        elif p.dim() >= 2:
            p.copy_(fan_in_w(p))
        else:
            p.copy_(rn(p, 0.05))
        if fp16_names(name):  # exactly representable in f16, so the .pth's f16 copy is the same value
            p.copy_(p.half().float())


@torch.no_grad()
def randomize(netG, netD, netC):
    for name, p in netG.named_parameters():
        if name.startswith("mapping.CLIP_ViT."):
            continue
        leaf, parent = name.split(".")[-1], name.split(".")[-2]
        last = (".linear2." in name or ".fc_gamma.2." in name or ".fc_beta.2." in name)
        if parent == "bn" or parent == "gn":
            p.copy_(0.5 + torch.rand_like(p) if leaf == "weight" else rn(p, 0.2))
        elif leaf in ("cweight", "sweight"):
            p.copy_(rn(p, 1.0))
        elif leaf in ("cbias", "sbias"):
            p.copy_(1 + rn(p, 0.5))
        elif ".rnn." in name or ".rat.cell." in name:
            H = netG.mapping.FBlocks[0].fuse1.affine0.fc_gamma[0].in_features
            p.copy_(rn(p, 1.0 / math.sqrt(H)) if "weight" in leaf else rn(p, 0.2))
        elif last and leaf == "bias":
            p.copy_(1 + rn(p, 0.1) if ".fc_gamma." in name else rn(p, 0.1))
        elif last and leaf == "weight":
            p.copy_(rn(p, 0.3 / math.sqrt(p.shape[1])))
        elif p.dim() >= 2:
            p.copy_(fan_in_w(p))
        else:
            p.copy_(rn(p, 0.05))
    for name, b in netG.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(rn(b, 0.2))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand_like(b))
        elif name.endswith("num_batches_tracked"):
            b.fill_(int(torch.randint(1, 1000, ())))

    for net in (netD, netC):
        for name, p in net.named_parameters():
            leaf = name.split(".")[-1]
            if leaf in ("gamma", "beta"):
                p.copy_(0.5 + rn(p, 0.1))
            elif p.dim() >= 2:
                p.copy_(fan_in_w(p))
            else:
                p.copy_(rn(p, 0.05))


# ----------------------------------------------------------------------------------------------
# File layouts
# ----------------------------------------------------------------------------------------------

def clip_config_of(cfg):
    return cfg["clip"]


def clip_openai_state(clip, with_logit_scale):
    sd = OrderedDict((k, v.detach().float().contiguous().clone()) for k, v in clip.state_dict().items())
    if not with_logit_scale:
        sd.pop("logit_scale")
    return sd


def model_file_tensors(clip, netG, netD, netC):
    out = OrderedDict()
    for k, v in clip_openai_state(clip, False).items():
        out["clip." + k] = v
    for prefix, net in (("netG.", netG), ("netD.", netD), ("netC.", netC)):
        for k, v in net.state_dict().items():
            if k.startswith("mapping.CLIP_ViT."):
                continue
            out[prefix + k] = v.detach().float().contiguous().clone()
    return out


def release_checkpoint(netG, netD, netC, gradsG, gradsD, epoch=7, with_optimizer=False):
    """The released train loop's checkpoint dict, with real Adam(betas=(0, 0.9)) state after one step
    taken on copies (the saved weights are the fixture's)."""
    sdG = copy.deepcopy(netG.state_dict())
    for k in list(sdG.keys()):
        if k.startswith("mapping.CLIP_ViT.") and fp16_names("visual." + k[len("mapping.CLIP_ViT."):]):
            sdG[k] = sdG[k].half()

    def adam(params, grads, lr):
        ps = [p.detach().clone().requires_grad_(p.requires_grad) for p in params]
        opt = torch.optim.Adam(ps, lr=lr, betas=(0.0, 0.9))
        for p, g in zip(ps, grads):
            p.grad = None if g is None else g.clone()
        opt.step()
        return opt.state_dict()

    ckpt = {"model": {"netG": sdG, "netD": copy.deepcopy(netD.state_dict()), "netC": copy.deepcopy(netC.state_dict())},
            "epoch": epoch}
    if with_optimizer:  # the released save_models_opt layout; triples the file, so off for CI fixtures
        optG = adam(list(netG.parameters()), gradsG, 1e-4)
        optD = adam(list(netD.parameters()) + list(netC.parameters()), gradsD, 4e-4)
        ckpt["optimizers"] = {"optimizer_G": optG, "optimizer_D": optD}
    return ckpt


# ----------------------------------------------------------------------------------------------
# Fixture generation
# ----------------------------------------------------------------------------------------------

def amax(t):
    return f"{t.detach().abs().max().item():.6g}"


def check_release_batching(netG, cfg):
    """ratlip-release: per-sample semantics == the released code's y.unsqueeze(0) at batch 1."""
    g = torch.Generator().manual_seed(123)
    noise = torch.randn(1, cfg["z_dim"], generator=g)
    sent = torch.randn(1, cfg["cond_dim"], generator=g)
    netG.eval()
    with torch.no_grad():
        a = netG(noise, sent)
        b = netG(noise, sent, released_batching=True)
    assert torch.equal(a, b), (a - b).abs().max()
    # ... and at batch > 1 they do differ (the released batching mixes samples)
    noise3 = torch.randn(3, cfg["z_dim"], generator=g)
    sent3 = torch.randn(3, cfg["cond_dim"], generator=g)
    with torch.no_grad():
        a = netG(noise3, sent3)
        b = netG(noise3, sent3, released_batching=True)
    assert not torch.allclose(a, b), "released batching unexpectedly per-sample"


def run_arch(cfg, out_dir, seed, with_optimizer=False, model_files=False, B=3):
    arch = cfg["arch"]
    torch.manual_seed(seed)
    clip, netG, netD, netC = build(cfg)
    S, z, cd = cfg["image_size"], cfg["z_dim"], cfg["cond_dim"]

    # snapshot of the model as saved (before the train-mode pass moves the BN running stats)
    model_tensors = model_file_tensors(clip, netG, netD, netC)
    clip_sd = clip_openai_state(clip, True)
    pristine_G = copy.deepcopy(netG.state_dict())

    if arch == "ratlip-release":
        check_release_batching(netG, cfg)
        netG.load_state_dict(pristine_G)

    gen = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(B, z, generator=gen)
    sent = torch.randn(B, cd, generator=gen)
    seed_g = torch.randn(B, 3, S, S, generator=gen)
    d_image = torch.rand(B, 3, S, S, generator=gen) * 2 - 1
    seed_d = torch.randn(B, 1, 1, 1, generator=gen)

    # ---- G eval ----
    netG.eval()
    with torch.no_grad():
        g_eval = netG(noise, sent)

    # ---- G train: BN batch stats, gradients of sum(out * R) ----
    netG.train()
    noise_t = noise.clone().requires_grad_(True)
    sent_t = sent.clone().requires_grad_(True)
    g_train = netG(noise_t, sent_t)
    (g_train * seed_g).sum().backward()
    ref = OrderedDict()
    ref["noise"], ref["sent_emb"] = noise, sent
    ref["g_eval_image"] = g_eval
    ref["g_train_image"] = g_train.detach()
    for k, v in netG.state_dict().items():
        if k.endswith("running_mean") or k.endswith("running_var"):
            ref["g_train_bn." + k] = v.clone()
    ref["g_grad_seed"] = seed_g
    gradsG = []
    for k, p in netG.named_parameters():
        gradsG.append(p.grad)
        if k.startswith("mapping.CLIP_ViT."):
            assert p.grad is None
            continue
        assert p.grad is not None, f"no gradient for netG.{k}"
        ref["grad.netG." + k] = p.grad.clone()
    ref["grad.noise"], ref["grad.sent_emb"] = noise_t.grad.clone(), sent_t.grad.clone()
    netG.load_state_dict(pristine_G)  # restore BN running stats

    # ---- D / C ----
    d_img = d_image.clone().requires_grad_(True)
    feats, emb = clip_image_features(clip, d_img, cfg["clip_features"])
    feats.retain_grad()
    d_out = netD(feats)
    sent_c = sent.clone().requires_grad_(True)
    logit = netC(d_out, sent_c)
    (logit * seed_d).sum().backward()
    ref["d_image"], ref["d_features"], ref["d_embedding"] = d_image, feats.detach(), emb.detach()
    ref["d_out"], ref["c_logit"], ref["d_grad_seed"] = d_out.detach(), logit.detach(), seed_d
    gradsD = []
    for prefix, net in (("netD.", netD), ("netC.", netC)):
        for k, p in net.named_parameters():
            gradsD.append(p.grad)
            if prefix == "netD." and p.grad is None:
                # conv_s of a W->W DBlock is built but never used (as in the released code)
                assert k.endswith("conv_s.weight") or k.endswith("conv_s.bias"), k
                continue
            ref[f"grad.{prefix}{k}"] = p.grad.clone()
    ref["grad.d_features"] = feats.grad.clone()
    ref["grad.c_sent_emb"] = sent_c.grad.clone()
    ref["grad.d_image"] = d_img.grad.clone()

    ref = OrderedDict((k, v.detach().float().contiguous()) for k, v in ref.items())
    meta = {"ratlip_config": config_json(cfg), "arch": arch, "batch": str(B), "seed": str(seed),
            "torch": torch.__version__, "generator": "tools/reference/model_reference.py",
            "bn_running_var_update": "unbiased batch variance (n/(n-1)), momentum 0.1",
            "unused_grads": "grad.netD.DBlocks.*.conv_s.* absent (unused, None in torch)"}
    for k in ("g_eval_image", "g_train_image", "d_features", "d_embedding", "d_out", "c_logit",
              "grad.noise", "grad.sent_emb", "grad.d_image", "grad.d_features", "grad.c_sent_emb"):
        meta["max_abs." + k] = amax(ref[k])
    meta["max_abs.grad.netG"] = amax(torch.stack([v.abs().max() for k, v in ref.items() if k.startswith("grad.netG.")]))

    os.makedirs(out_dir, exist_ok=True)
    if arch == "ratlip" or model_files:  # galip/ratlip-release reach the tests through their .pth (import)
        save_file(dict(model_tensors), os.path.join(out_dir, f"{arch}.safetensors"),
                  metadata={"ratlip_config": config_json(cfg)})
    save_file(dict(ref), os.path.join(out_dir, f"{arch}_reference.safetensors"), metadata=meta)
    if arch in ("galip", "ratlip-release"):
        ckpt = release_checkpoint(netG, netD, netC, gradsG, gradsD, with_optimizer=with_optimizer)
        torch.save(ckpt, os.path.join(out_dir, f"{arch}_release.pth"))
    return clip_sd, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--config", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--arch", choices=ARCHS + ["all"], default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--with-optimizer", action="store_true", help="include Adam state in *_release.pth")
    ap.add_argument("--model-files", action="store_true", help="write {arch}.safetensors for every arch, not only ratlip")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    out = args.out or os.path.join(here, "..", "..", "tests", "fixtures", f"model_{args.config}")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    archs = ARCHS if args.arch == "all" else [args.arch]
    mk = tiny_config if args.config == "tiny" else full_config
    clip_sd = None
    for arch in archs:
        cfg = mk(arch)
        sd, meta = run_arch(cfg, out, args.seed, args.with_optimizer, args.model_files)
        if clip_sd is None:
            clip_sd = sd
        else:  # the same seed gives the same CLIP for every arch (built first)
            assert all(torch.equal(clip_sd[k], sd[k]) for k in sd)
        print(arch, {k: v for k, v in meta.items() if k.startswith("max_abs")})
    save_file(dict(clip_sd), os.path.join(out, "clip_openai.safetensors"),
              metadata={"clip_config": json.dumps(mk("galip")["clip"], separators=(",", ":"))})
    print("wrote", os.path.abspath(out), sorted(os.listdir(out)))


if __name__ == "__main__":
    main()

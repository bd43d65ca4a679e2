#!/usr/bin/env python3
"""PyTorch reference for ONE contrastive CLIP training step (`ratlip train-clip`, src/train/clip.rs),
and a second step on the same batch, so Adam's state carries over once.

  logits = exp(logit_scale) * normalize(img_emb) @ normalize(txt_emb).T        (B x B)
  L      = (CE(logits, arange(B)) + CE(logits.T, arange(B))) / 2
  torch.optim.Adam(every CLIP tensor + logit_scale, lr=1e-3, betas=(0.9, 0.98), eps=1e-6),
  then logit_scale.clamp_(0, ln 100) after each step (open_clip's training loop).

CLIP is model_reference.py's OpenAI-layout CLIP (OpenAI names, nn.MultiheadAttention, QuickGELU) on
a tiny config (widths 32, 2+2 layers, vocab 64, context 8, 8 px images in 4 px patches, embed 16)
with random weights of sensible scale (layer norms 1 + noise, non-zero biases) and
logit_scale = ln(1/0.07).  float32, one thread, deterministic.

  /work/venv-ref/bin/python tools/reference/clip_train_reference.py [OUT_DIR]   (default tests/fixtures/clip_train)

Writes:
  clip.safetensors   the CLIP before the step: OpenAI names + logit_scale, metadata clip_config
                     (what `ratlip train-clip` checkpoints look like; `Clip::load` reads it)
  negatives.safetensors  negatives [4,8] (ids as f32; the batch is step.safetensors' pixels and
                     ids), loss / acc_i2t / acc_t2i [1] and grad.<name> of NegCLIP's loss with them
  step.safetensors   pixels [B,3,8,8] (already CLIP-normalised), ids [B,8] (as f32), loss [1],
                     acc_i2t / acc_t2i [1], grad.<name> (of step 1's loss, in_proj whole),
                     loss2 [1] (step 2's loss, after the first update), after.<name> (after both
                     updates and clamps); metadata lr.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model_reference import CLIP, save_file  # noqa: E402

CFG = {
    "text": {"width": 32, "layers": 2, "heads": 2, "context_length": 8, "vocab_size": 64},
    "vision": {"width": 32, "layers": 2, "heads": 2, "patch_size": 4, "image_size": 8},
    "embed_dim": 16,
    "layer_norm_eps": 1e-5,
}
B = 6
LR = 1e-3


def encode_image(clip, x):
    vis = clip.visual
    x = vis.conv1(x)
    Bn, W, g, _ = x.shape
    x = x.reshape(Bn, W, g * g).permute(0, 2, 1)
    x = torch.cat([vis.class_embedding.expand(Bn, 1, W), x], 1) + vis.positional_embedding
    x = vis.ln_pre(x).permute(1, 0, 2)
    for blk in vis.transformer.resblocks:
        x = blk(x)
    x = x.permute(1, 0, 2)
    return vis.ln_post(x[:, 0, :]) @ vis.proj


def loss_of(clip, pixels, ids, negatives=None):
    """CLIP's loss; with `negatives` (K more captions) NegCLIP's: image -> text over the B
    captions and the K negatives, text -> image over the B images for the B captions only."""
    b = len(ids)
    texts = ids if negatives is None else torch.cat([ids, negatives])
    img = F.normalize(encode_image(clip, pixels), dim=-1)
    txt = F.normalize(clip.encode_text(texts)[0], dim=-1)
    logits = clip.logit_scale.exp() * img @ txt.t()
    t = torch.arange(b)
    loss = (F.cross_entropy(logits, t) + F.cross_entropy(logits[:, :b].t(), t)) / 2
    acc_i2t = (logits.argmax(1) == t).float().mean()
    acc_t2i = (logits[:, :b].argmax(0) == t).float().mean()
    return loss, acc_i2t, acc_t2i


def gradients(clip, pixels, ids, negatives=None):
    """loss, acc_i2t, acc_t2i and grad.<name> of one loss; the gradients stay in .grad."""
    clip.zero_grad()
    loss, acc_i2t, acc_t2i = loss_of(clip, pixels, ids, negatives)
    loss.backward()
    rec = {"loss": loss.detach().reshape(1), "acc_i2t": acc_i2t.reshape(1), "acc_t2i": acc_t2i.reshape(1)}
    for name, p in clip.named_parameters():
        rec["grad." + name] = p.grad.detach().clone().reshape(p.shape)
    return rec


def random_ids(n, ctx, vocab):
    ids = torch.zeros(n, ctx, dtype=torch.long)
    for i in range(n):
        k = 2 + i % 5  # tokens before EOT, 2..6
        ids[i, 0] = vocab - 2  # BOS-like
        ids[i, 1:k] = torch.randint(1, vocab - 2, (k - 1,))
        ids[i, k] = vocab - 1  # EOT: the largest id
    return ids


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/clip_train"
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    clip = CLIP(CFG)
    with torch.no_grad():
        for name, p in clip.named_parameters():
            if name == "logit_scale":
                p.fill_(math.log(1 / 0.07))
            elif ".ln" in name or name.startswith("ln_") or "ln_final" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
            else:
                fan = p.shape[-1] if p.dim() > 1 else p.shape[0]
                if name == "visual.conv1.weight":
                    fan = p[0].numel()
                p.copy_(torch.randn_like(p) / math.sqrt(fan))
    sd = {k: v.detach().clone().float().contiguous() for k, v in clip.state_dict().items()}
    save_file(sd, os.path.join(out, "clip.safetensors"), {"clip_config": json.dumps(CFG), "format": "ratlip-clip"})

    pixels = torch.randn(B, 3, 8, 8)
    ctx, vocab = CFG["text"]["context_length"], CFG["text"]["vocab_size"]
    ids = random_ids(B, ctx, vocab)
    # Hard negatives (after every draw above, so the plain step's fixture stays as it was): K = 4
    # captions that no image matches, each one of the batch's captions with one token changed.
    negatives = ids[[0, 2, 3, 5]].clone()
    for r in range(len(negatives)):
        negatives[r, 1] = (negatives[r, 1] % (vocab - 3)) + 1
    neg = {"negatives": negatives.float(), **gradients(clip, pixels, ids, negatives)}
    neg = {k: v.float().contiguous() for k, v in neg.items()}
    save_file(neg, os.path.join(out, "negatives.safetensors"), {})
    opt = torch.optim.Adam(clip.parameters(), lr=LR, betas=(0.9, 0.98), eps=1e-6)

    rec = {"pixels": pixels, "ids": ids.float(), **gradients(clip, pixels, ids)}
    loss = rec["loss"]
    a_i, a_t = rec["acc_i2t"], rec["acc_t2i"]
    opt.step()
    with torch.no_grad():
        clip.logit_scale.clamp_(0, math.log(100))
    loss2, _, _ = loss_of(clip, pixels, ids)
    opt.zero_grad()
    loss2.backward()
    opt.step()
    with torch.no_grad():
        clip.logit_scale.clamp_(0, math.log(100))
    rec["loss2"] = loss2.detach().reshape(1)
    for name, p in clip.named_parameters():
        rec["after." + name] = p.detach().clone()
    rec = {k: v.float().contiguous() for k, v in rec.items()}
    save_file(rec, os.path.join(out, "step.safetensors"), {"lr": str(LR)})
    print(f"loss {loss.item():.6f} loss2 {loss2.item():.6f} acc {a_i.item():.3f}/{a_t.item():.3f} -> {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Is CLIP A's blindness to the smile our engine's, or the task's? The same CLIP in PyTorch.

    python3 tools/measure/clip_smile_torch.py FACES_DIR STEPS [--head-w W] [--seed S]
    (needs torch, numpy, pillow and tokenizers from PyPI; CPU, about 0.17 s a step on 2 cores)

Trains tools/recipes/clip_a32.json's CLIP from OpenAI's init (as src/clip/init.rs) on a
`ratlip dataset synth --kind faces --size 32` folder as `ratlip train-clip` does: batch 64,
Adam 5e-4 (0.9, 0.98, 1e-6), logit scale clamped to [0, ln 100], Resize(38) + RandomCrop(32),
CLIP's normalisation, the last 500 images held out, one caption drawn per image. With
--head-w W, a linear head on the normalised image embedding reads the expression alone
(logits 10 · norm(img) · W, W zero at the start: src/train/attribute_head.rs) at weight W.

Every 100 steps it prints the balanced accuracy of a linear probe (shrunk LDA fitted on half
the held-out embeddings, scored on the other half) for expression; "pixel probe" is the same
probe on the raw pixels, the ceiling. docs/evaluation.md ("The smile was outvoted") has what
it printed.
"""
import argparse, gzip, json, math, os, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tokenizers import Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
from model_reference import CLIP  # noqa: E402

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
BOS, EOS, HOLDOUT, BATCH = 49406, 49407, 500, 64


def openai_init(clip, cfg):
    for n, p in clip.named_parameters():
        tower = cfg["vision"] if n.startswith("visual") else cfg["text"]
        w, layers = tower["width"], tower["layers"]
        if n == "logit_scale":
            p.fill_(math.log(1 / 0.07))
        elif any(q.startswith("ln") for q in n.split(".")[:-1]):
            p.fill_(1.0 if n.endswith("weight") else 0.0)
        elif n.endswith("bias"):
            p.zero_()
        elif "in_proj_weight" in n:
            p.normal_(0, w ** -0.5)
        elif "out_proj.weight" in n or "c_proj.weight" in n:
            p.normal_(0, w ** -0.5 * (2 * layers) ** -0.5)
        elif "c_fc.weight" in n:
            p.normal_(0, (2 * w) ** -0.5)
        elif n == "token_embedding.weight":
            p.normal_(0, 0.02)
        elif n == "positional_embedding":
            p.normal_(0, 0.01)
        elif n == "visual.conv1.weight":
            p.normal_(0, (3 * cfg["vision"]["patch_size"] ** 2) ** -0.5)
        else:  # text_projection, visual.{class,positional}_embedding, visual.proj
            p.normal_(0, w ** -0.5)


def encode_image(clip, x):
    vis = clip.visual
    x = vis.conv1(x)
    b, w, g, _ = x.shape
    x = torch.cat([vis.class_embedding.expand(b, 1, w), x.reshape(b, w, g * g).permute(0, 2, 1)], 1) + vis.positional_embedding
    x = vis.ln_pre(x).permute(1, 0, 2)
    for blk in vis.transformer.resblocks:
        x = blk(x)
    return vis.ln_post(x.permute(1, 0, 2)[:, 0, :]) @ vis.proj


def probe(x, y):
    x = F.normalize(x.reshape(len(y), -1), dim=-1).double()
    n = len(y) // 2
    a, b, ya, yb = x[:n], x[n:], y[:n], y[n:]
    m0, m1 = a[ya == 0].mean(0), a[ya == 1].mean(0)
    cov = torch.cov(torch.cat([a[ya == 0] - m0, a[ya == 1] - m1]).T) + 1e-3 * torch.eye(a.shape[1], dtype=torch.double)
    w = torch.linalg.solve(cov, m1 - m0)
    pred = (b @ w > w @ (m0 + m1) / 2).long()
    return 0.5 * ((pred[yb == 0] == 0).double().mean() + (pred[yb == 1] == 1).double().mean()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("steps", type=int)
    ap.add_argument("--head-w", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(2)
    cfg = json.load(open(os.path.join(ROOT, "tools", "recipes", "clip_a32.json")))
    tok = Tokenizer.from_str(gzip.open(os.path.join(ROOT, "assets", "tokenizer.json.gz")).read().decode())
    ctx = cfg["text"]["context_length"]
    rows = [json.loads(line) for line in open(os.path.join(args.data, "attributes.jsonl"))]
    images = torch.tensor(np.stack([np.asarray(Image.open(os.path.join(args.data, r["file"])).convert("RGB")) for r in rows]))
    images = images.permute(0, 3, 1, 2).float() / 255.0
    captions = [open(os.path.join(args.data, r["file"][:-4] + ".txt")).read().strip().split("\n") for r in rows]
    smiling = torch.tensor([int(r["expression"] == "smiling") for r in rows])
    train = len(rows) - HOLDOUT

    def ids_of(caption):
        ids = [BOS] + tok.encode(caption, add_special_tokens=False).ids[: ctx - 2] + [EOS]
        return ids + [0] * (ctx - len(ids))

    clip = CLIP(cfg)
    with torch.no_grad():
        openai_init(clip, cfg)
    head = torch.nn.Parameter(torch.zeros(cfg["embed_dim"], 2))
    opt = torch.optim.Adam(list(clip.parameters()) + [head], lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    held, held_y = (images[train:] - MEAN) / STD, smiling[train:]
    print(f"pixel probe {probe(images[train:], held_y):.3f}")

    def report(step, extra=""):
        with torch.no_grad():
            print(f"step {step}{extra}  probe expression {probe(encode_image(clip, held), held_y):.3f}", flush=True)

    report(0)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, train, BATCH)
        x = F.interpolate(images[idx], size=38, mode="bilinear", antialias=True, align_corners=False)
        i, j = rng.integers(0, 7, 2)
        x = (x[:, :, i : i + 32, j : j + 32] - MEAN) / STD
        ids = torch.tensor([ids_of(captions[k][rng.integers(len(captions[k]))]) for k in idx])
        img = F.normalize(encode_image(clip, x), dim=-1)
        txt = F.normalize(clip.encode_text(ids)[0], dim=-1)
        logits = clip.logit_scale.exp() * img @ txt.T
        t = torch.arange(BATCH)
        loss = (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2
        head_loss = F.cross_entropy(10.0 * img @ head, smiling[idx])
        opt.zero_grad()
        (loss + args.head_w * head_loss).backward()
        opt.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0:
            report(step, f"  loss {loss.item():.3f}  head loss {head_loss.item():.3f}  {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

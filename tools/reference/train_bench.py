#!/usr/bin/env python3
"""PyTorch eager CPU benchmark of ONE whole training step of the released loop
(train_reference.released_step: G once, D step with MA-GP by create_graph, G step, both Adam
updates), random weights and data, threads = os.cpu_count() unless --threads.

Compare with `ratlip bench train` at the same --arch/--size/--batch (same config presets:
model_reference.tiny_config / full_config are ModelConfig::tiny / released).

  /work/venv-ref/bin/python tools/reference/train_bench.py --arch ratlip --size tiny --batch 8
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_reference as mr  # noqa: E402
import train_reference as tr  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=tr.ARCHS + ["ratlip-release"], default="ratlip")
    ap.add_argument("--size", choices=["tiny", "released"], default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = mr.tiny_config(a.arch) if a.size == "tiny" else mr.full_config(a.arch)
    clip, netG, netD, netC = mr.build(cfg)
    netG.train(), netD.train(), netC.train()
    opts = tr.optimisers(netG, netD, netC)
    B, S = a.batch, cfg["image_size"]
    images = torch.rand(B, 3, S, S) * 2 - 1
    sent_emb = torch.randn(B, cfg["cond_dim"])
    noise = torch.randn(B, cfg["z_dim"])
    step = lambda: tr.released_step((clip, netG, netD, netC), opts, images, sent_emb, noise, cfg["clip_features"])
    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.reps):
        losses = step()
    ms = (time.perf_counter() - t0) * 1e3 / a.reps
    print(json.dumps({"arch": a.arch, "size": a.size, "batch": B, "image_size": S, "threads": a.threads,
                      "torch": torch.__version__, "ms_per_step": round(ms, 1), "images_per_s": round(B * 1e3 / ms, 2),
                      "loss_d": round(losses["d"].item(), 4)}))


if __name__ == "__main__":
    main()

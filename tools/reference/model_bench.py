#!/usr/bin/env python3
"""PyTorch eager CPU benchmark of the generator at the FULL config (ngf 64, S 224, ViT-B/32 sizes),
random weights, eval mode, torch.no_grad, threads = os.cpu_count().

Prints one JSON line per batch size: ms per image, images/s, and the GFLOP per image counted by
torch.utils.flop_counter.FlopCounterMode (convs, linears, matmuls, attention; one multiply-add =
2 FLOP; normalisations and pointwise ops not counted).  The count runs once at batch 1 with
autograd enabled, so nn.MultiheadAttention takes its composite path (the no-grad fast path is an
opaque kernel the counter does not see).

  /work/venv-ref/bin/python tools/reference/model_bench.py                 # batch 1 and 16
  /work/venv-ref/bin/python tools/reference/model_bench.py --big           # also batch 64
  options: --arch galip|ratlip|ratlip-release (default ratlip), --iters N, --batches 1,16
"""
import argparse
import json
import os
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_reference as M  # noqa: E402


def count_gflop(netG, cfg):
    noise = torch.randn(1, cfg["z_dim"])
    sent = torch.randn(1, cfg["cond_dim"])
    fc = FlopCounterMode(display=False)
    with fc, torch.enable_grad():
        netG(noise, sent)
    total = fc.get_total_flops()
    by_op = {str(k): v for k, v in fc.get_flop_counts().get("Global", {}).items()}
    return total / 1e9, {k: round(v / 1e9, 3) for k, v in by_op.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=M.ARCHS, default="ratlip")
    ap.add_argument("--big", action="store_true", help="also batch 64")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--iters", type=int, default=2)
    args = ap.parse_args()
    threads = os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = M.full_config(args.arch)
    clip, netG, _, _ = M.build(cfg)
    del clip
    netG.eval()
    gflop, by_op = count_gflop(netG, cfg)
    n_params = sum(p.numel() for n, p in netG.named_parameters() if not n.startswith("mapping.CLIP_ViT."))
    batches = [int(b) for b in args.batches.split(",")] + ([64] if args.big else [])
    for B in batches:
        noise = torch.randn(B, cfg["z_dim"])
        sent = torch.randn(B, cfg["cond_dim"])
        with torch.no_grad():
            netG(noise, sent)  # warm-up
            times = []
            for _ in range(args.iters):
                t = time.perf_counter()
                netG(noise, sent)
                times.append(time.perf_counter() - t)
        best = min(times)
        print(json.dumps({
            "bench": "torch_eager_cpu_G", "arch": args.arch, "config": "full", "batch": B, "threads": threads,
            "torch": torch.__version__, "iters": args.iters, "best_s": round(best, 4),
            "mean_s": round(sum(times) / len(times), 4), "ms_per_image": round(1000 * best / B, 2),
            "images_per_s": round(B / best, 4), "gflop_per_image": round(gflop, 3),
            "gflop_per_s": round(gflop * B / best, 2), "g_params_learned": n_params, "gflop_by_op": by_op,
        }), flush=True)


if __name__ == "__main__":
    main()

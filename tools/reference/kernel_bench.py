"""PyTorch eager timings of the shapes `ratlip bench kernels` runs, on this machine's CPU,
for the ratio in the notes. Same definitions: matmul x[M,K] @ W[N,K]^T (backward = dx + dW),
conv 3x3 pad 1 at batch 1 (fwd, dx, dw separately).

  python tools/reference/kernel_bench.py --threads 2
"""
import argparse
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--reps", type=int, default=5)
args = ap.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)


def timed(f):
    f()
    t = time.perf_counter()
    for _ in range(args.reps):
        f()
    return (time.perf_counter() - t) / args.reps * 1e3


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
print(f"{'case':<44} {'GFLOP':>10} {'ms':>10} {'GFLOP/s':>9}")
for m, k, n in [(50, 768, 3072), (77, 512, 2048), (1024, 1024, 1024)]:
    x = torch.randn(m, k, requires_grad=True)
    w = torch.randn(n, k, requires_grad=True)
    gf = 2 * m * n * k / 1e9
    y = x @ w.t()
    dy = torch.randn_like(y)
    fwd = timed(lambda: x @ w.t())
    bwd = timed(lambda: torch.autograd.grad(x @ w.t(), (x, w), dy)) - fwd
    print(f"{f'matmul {m}x{k}x{n} fwd':<44} {gf:>10.3f} {fwd:>10.2f} {gf / fwd * 1e3:>9.1f}")
    print(f"{f'matmul {m}x{k}x{n} bwd (dx+dW)':<44} {2 * gf:>10.3f} {bwd:>10.2f} {2 * gf / bwd * 1e3:>9.1f}")
for cin, cout, hw in [(512, 512, 32), (128, 64, 224)]:
    x = torch.randn(1, cin, hw, hw, requires_grad=True)
    w = torch.randn(cout, cin, 3, 3, requires_grad=True)
    gf = 2 * cout * hw * hw * cin * 9 / 1e9
    y = torch.nn.functional.conv2d(x, w, padding=1)
    dy = torch.randn_like(y)
    fwd = timed(lambda: torch.nn.functional.conv2d(x, w, padding=1))
    dx = timed(lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, padding=1))
    dw = timed(lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, padding=1))
    for name, ms in [("fwd", fwd), ("dx", dx), ("dw", dw)]:
        print(f"{f'conv3x3 {cin}->{cout} @{hw} {name}':<44} {gf:>10.3f} {ms:>10.2f} {gf / ms * 1e3:>9.1f}")

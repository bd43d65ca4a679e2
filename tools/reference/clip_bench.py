"""PyTorch eager CLIP throughput on this machine, for the ratio `ratlip bench clip` prints.

Random ViT-B/32 weights (the speed does not depend on their values); the same work as ours:
text tower to the sentence embedding at batch B, image tower to the projected embedding at
batch B. Prints prompts/s and images/s as JSON.

  python tools/reference/clip_bench.py --batch 16 --threads 2
"""
import argparse
import json
import time

import torch
from transformers import CLIPConfig, CLIPModel

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--threads", type=int, default=0)
args = ap.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
cfg = CLIPConfig(
    text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu"),
    vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=224, patch_size=32, hidden_act="quick_gelu"),
    projection_dim=512)
model = CLIPModel(cfg).eval()
B = args.batch
ids = torch.randint(1, 49000, (B, 77))
ids[:, -1] = 49407
px = torch.randn(B, 3, 224, 224)


def timed(f):
    f()
    t = time.perf_counter()
    for _ in range(args.reps):
        f()
    return (time.perf_counter() - t) / args.reps


with torch.no_grad():
    tt = timed(lambda: model.get_text_features(input_ids=ids))
    ti = timed(lambda: model.get_image_features(pixel_values=px))
print(json.dumps({"batch": B, "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "prompts_per_s": B / tt, "images_per_s": B / ti}))

"""Reference for ratlip's CLIP scoring preprocessing (tests/fixtures/preprocess/).

Writes a synthetic RGB image (smooth gradients + noise, odd size, landscape and portrait) and
what CLIP's own transform makes of it: Resize(size, BICUBIC) on the PIL image (short side),
CenterCrop(size), ToTensor, Normalize(CLIP mean/std) — written out with PIL directly so that
torchvision is not needed.
"""
import os

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
out = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/preprocess")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
tensors = {}
for name, (w, h) in {"landscape": (61, 45), "portrait": (40, 97)}.items():
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(out, f"{name}.png"))
    size = 32
    pil = Image.open(os.path.join(out, f"{name}.png")).convert("RGB")
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    r = pil.resize((nw, nh), Image.BICUBIC)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    c = np.asarray(r.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    tensors[name] = ((c - MEAN) / STD).transpose(2, 0, 1).copy()
save_file(tensors, os.path.join(out, "expected.safetensors"))
print("wrote", out)

#!/usr/bin/env python3
# Usage: python3 tools/measure/hf_spread.py RATLIP_BINARY MODEL.safetensors  (standard library only)
# HF (mean |x - 3x3 box blur(x)|, blur over the valid neighbours) and spread (per-pixel std over
# the 8 seeds of one prompt, averaged) on 4 prompts x 8 seeds of raw float output.
import json, struct, subprocess, sys, array, math
R, model = sys.argv[1], sys.argv[2]
prompts = ["a young woman with red hair and glasses, smiling", "He is old, receding hairline",
           "a bald man with a beard on a blue background", "portrait of a young man with black hair, green background"]
def load(p):
    f = open(p, 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
    t = h['images']; a, b = t['data_offsets']; f.seek(base + a)
    x = array.array('f'); x.frombytes(f.read(b - a)); return x, t['shape']
hf_all, sp_all = [], []
for i, p in enumerate(prompts):
    out = f'/tmp/hfs_{i}.safetensors'
    subprocess.run([R, 'generate', '--model', model, '--prompt', p, '--count', '8', '--seed', '0', '--save-tensor', out], check=True, capture_output=True)
    x, (k, c, s, _) = load(out)
    px = c * s * s
    hf = 0.0
    for img in range(k):
        for ch in range(c):
            o = img * px + ch * s * s
            for y in range(s):
                for xx in range(s):
                    acc = 0.0; n = 0
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            yy, xq = y + dy, xx + dx
                            if 0 <= yy < s and 0 <= xq < s:
                                acc += x[o + yy * s + xq]; n += 1
                    hf += abs(x[o + y * s + xx] - acc / n)
    hf_all.append(hf / (k * px))
    sp = 0.0
    for j in range(px):
        v = [x[img * px + j] for img in range(k)]; m = sum(v) / k
        sp += math.sqrt(sum((q - m) ** 2 for q in v) / k)
    sp_all.append(sp / px)
print(json.dumps({"hf": sum(hf_all) / 4, "spread": sum(sp_all) / 4, "spread_readme": sp_all[0]}))

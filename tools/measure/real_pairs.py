#!/usr/bin/env python3
# Usage: python3 tools/measure/real_pairs.py DATASET_DIR  (standard library only)
# Mean |x_i - x_j| (pixels in [-1, 1]) over pairs of real images of a `ratlip dataset synth
# --kind faces` folder: random pairs, pairs matching the README prompt's attributes, and pairs
# with every attribute equal; the first 3000 images, 150 (60) pairs each, random seed 0.
# Sets the scale of `train --div-tau` (src/train/objective.rs, DIV_TAU).
import json, zlib, struct, random, sys
root = sys.argv[1]
def png(p):
    d = open(p,'rb').read(); i = 8; idat = b''; w = h = 0
    while i < len(d):
        n, t = struct.unpack('>I4s', d[i:i+8]); c = d[i+8:i+8+n]; i += 12 + n
        if t == b'IHDR': w, h = struct.unpack('>II', c[:8])
        elif t == b'IDAT': idat += c
    raw = zlib.decompress(idat); bpp = 3; st = w * bpp; out = []; prev = bytearray(st); k = 0
    for y in range(h):
        f = raw[k]; line = bytearray(raw[k+1:k+1+st]); k += 1 + st
        for x in range(st):
            a = line[x-bpp] if x >= bpp else 0; b = prev[x]; c = prev[x-bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                pp = a + b - c; pa, pb, pc = abs(pp-a), abs(pp-b), abs(pp-c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line; prev = line
    return [v / 127.5 - 1 for v in out]
attrs = [json.loads(l) for l in open(root + '/attributes.jsonl')][:3000]
def md(a, b): return sum(abs(x - y) for x, y in zip(a, b)) / len(a)
random.seed(0); cache = {}
def img(i):
    if i not in cache: cache[i] = png(root + '/' + attrs[i]['file'])
    return cache[i]
keys = ['age','gender','hair_color','hair_style','beard','expression','glasses','skin','background']
def sample(pred, n=150):
    idx = [i for i, a in enumerate(attrs) if pred(a)]
    ds = []
    for _ in range(n):
        i, j = random.sample(idx, 2); ds.append(md(img(i), img(j)))
    return len(idx), sum(ds) / len(ds)
print('random pairs', sample(lambda a: True))
print('readme prompt (young woman red glasses smiling)', sample(lambda a: a['age']=='young' and a['gender']=='woman' and a['hair_color']=='red' and a['glasses'] and a['expression']=='smiling', 60))
# all attributes equal: group
from collections import defaultdict
g = defaultdict(list)
for i, a in enumerate(attrs): g[tuple(str(a[k]) for k in keys)].append(i)
ds = []
for v in g.values():
    if len(v) >= 2:
        for _ in range(3):
            i, j = random.sample(v, 2); ds.append(md(img(i), img(j)))
        if len(ds) > 150: break
print('same attributes', len(ds), sum(ds) / len(ds))

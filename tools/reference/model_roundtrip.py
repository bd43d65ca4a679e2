#!/usr/bin/env python3
"""Check a PyTorch-layout state dict exported by ratlip against the reference modules.

Loads FILE into model_reference.py's NetG / NetD / NetC with load_state_dict(strict=True), runs G
in eval mode on the noise / sent_emb of a *_reference.safetensors and prints the max abs and
relative difference to its g_eval_image (and, when FILE has netD/netC, NetD/NetC on d_features
against d_out / c_logit).  Exit status 1 when a relative difference exceeds --tol.

FILE is either
  - a .pth in the released layout {'model': {'netG': sd, 'netD': sd, 'netC': sd}, ...} (netG
    holding the CLIP visual weights as mapping.CLIP_ViT.*; fp16 tensors are fine), or
  - a .safetensors with netG./netD./netC. prefixes.  When netG has no mapping.CLIP_ViT.* entries
    they are taken from clip.visual.* in the same file, or from --clip (an OpenAI-named CLIP file).
The config comes from --config-json, else FILE's "ratlip_config" metadata, else the reference's.

  /work/venv-ref/bin/python tools/reference/model_roundtrip.py tests/fixtures/model_tiny/galip_release.pth \
      --reference tests/fixtures/model_tiny/galip_reference.safetensors
"""
import argparse
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_reference as M  # noqa: E402

MAPPER_KEYS = ("conv1.weight", "class_embedding", "positional_embedding", "ln_pre.", "transformer.")


def strip_module(sd):
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def load_any(path):
    """-> (netG, netD, netC, clip) dicts (netD/netC/clip may be None), metadata config or None."""
    if path.endswith(".safetensors"):
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        flat = load_file(path)
        parts = {}
        for p in ("netG.", "netD.", "netC.", "clip."):
            parts[p] = {k[len(p):]: v for k, v in flat.items() if k.startswith(p)} or None
        other = [k for k in flat if not k.startswith(("netG.", "netD.", "netC.", "clip."))]
        if other:
            raise SystemExit(f"{path}: tensors outside netG./netD./netC./clip.: {other[:5]}")
        cfg = json.loads(meta["ratlip_config"]) if "ratlip_config" in meta else None
        return parts["netG."], parts["netD."], parts["netC."], parts["clip."], cfg
    ck = torch.load(path, map_location="cpu", weights_only=True)
    m = ck["model"]
    return (strip_module(m["netG"]), strip_module(m["netD"]) if "netD" in m else None,
            strip_module(m["netC"]) if "netC" in m else None, None, None)


def fill_mapper(sdG, clip_sd, where):
    if any(k.startswith("mapping.CLIP_ViT.") for k in sdG):
        return sdG
    if clip_sd is None:
        raise SystemExit(f"netG has no mapping.CLIP_ViT.* and no CLIP weights were given ({where}); use --clip")
    sdG = dict(sdG)
    for k, v in clip_sd.items():
        if k.startswith("visual.") and k[7:].startswith(MAPPER_KEYS):
            sdG["mapping.CLIP_ViT." + k[7:]] = v
    return sdG


def report(name, got, want, tol):
    d = (got - want).abs().max().item()
    rel = d / max(want.abs().max().item(), 1e-12)
    ok = rel <= tol
    print(json.dumps({"output": name, "max_abs_diff": d, "rel_diff": rel, "max_abs_ref": want.abs().max().item(),
                      "ok": ok}))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--reference", required=True,
                    help="an {arch}_reference.safetensors from model_reference.py, or the output of "
                         "`ratlip generate --noise N --save-tensor OUT` (images, noise, sent_emb)")
    ap.add_argument("--clip", help="OpenAI-named CLIP safetensors for a netG without mapping.CLIP_ViT.*")
    ap.add_argument("--config-json", help="ratlip config JSON file (else from FILE or the reference metadata)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max relative difference (max |d| / max |ref|)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    sdG, sdD, sdC, clip_sd, cfg = load_any(args.file)
    with safe_open(args.reference, "pt") as f:
        ref_meta = f.metadata() or {}
    if args.config_json:
        with open(args.config_json) as f:
            cfg = json.load(f)
    elif cfg is None:
        cfg = json.loads(ref_meta["ratlip_config"])
    ref = load_file(args.reference)
    if args.clip:
        clip_sd = load_file(args.clip)
    sdG = fill_mapper(sdG, clip_sd, args.file)

    clip, netG, netD, netC = M.build(cfg, random=False)
    netG.load_state_dict(sdG, strict=True)
    netG.eval()
    ok = True
    with torch.no_grad():
        want_key = "g_eval_image" if "g_eval_image" in ref else "images"
        sent = ref["sent_emb"]
        if sent.dim() == 1:  # ratlip generate: one prompt for every noise row
            sent = sent.unsqueeze(0).expand(ref["noise"].shape[0], -1)
        img = netG(ref["noise"], sent)
        ok &= report(want_key, img, ref[want_key], args.tol)
        if sdD is not None and sdC is not None and "d_features" in ref:
            netD.load_state_dict(sdD, strict=True)
            netC.load_state_dict(sdC, strict=True)
            d_out = netD(ref["d_features"])
            ok &= report("d_out", d_out, ref["d_out"], args.tol)
            ok &= report("c_logit", netC(d_out, ref["sent_emb"]), ref["c_logit"], args.tol)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

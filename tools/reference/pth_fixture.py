#!/usr/bin/env python3
"""Write tests/fixtures/pth/: a tiny GALIP/RATLIP-shaped training checkpoint and what ratlip
should read from it.

GALIP's train loop saves
    torch.save({'model': {'netG': G.state_dict(), 'netD': D.state_dict(), 'netC': C.state_dict()},
                'optimizers': {'optimizer_G': ..., 'optimizer_D': ...}, 'epoch': N}, path)
so the fixture has the same nesting, with a few tiny tensors that exercise the reader's
corners: an fp16 tensor, a non-contiguous (transposed) view saved as is, a view with a storage
offset, a `module.`-prefixed netD (DataParallel), Adam state in the optimizers entry and an int
epoch.

    state_epoch_tiny.pth    the checkpoint (torch's zip format)
    expected.safetensors    every tensor in it as contiguous f32, named by the dict keys
                            joined with '.'
    evil.pth                a checkpoint whose pickle would call os.system if unpickled by
                            Python; ratlip must not run it (it never calls anything)

Run with the reference venv (needs torch and safetensors):
    /work/venv-ref/bin/python tools/reference/pth_fixture.py
"""

import os
import pickle
import zipfile
from collections import OrderedDict

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "pth")


def flatten(obj, prefix, out):
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach().to(torch.float32).contiguous().clone()
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)

    base = r(3, 5)
    netG = {
        "fc.weight": r(8, 4),
        "fc.bias": r(8),
        "conv.weight": r(2, 3, 3, 3),
        # fp16 as saved by a half-precision run; read back as exactly this f16 value in f32.
        "to_rgb.weight": r(3, 2, 1, 1).half(),
        # A transposed view: the saved storage is `base`, strides (1, 5).
        "proj.weight": base.t(),
        # A slice with a storage offset (shares `base`'s storage).
        "proj.row": base[1],
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }
    # A real state_dict is an OrderedDict carrying `_metadata` (pickled through BUILD).
    netG = OrderedDict(netG)
    netG._metadata = OrderedDict({"": {"version": 1}})
    netD = {
        "module.conv.weight": r(4, 3, 3, 3),
        "module.conv.bias": r(4).double(),
    }
    netC = {"joint.weight": r(1, 4, 2, 2), "joint.bias": r(1).bfloat16()}
    p = torch.nn.Parameter(r(4))
    opt = torch.optim.Adam([p], lr=1e-4, betas=(0.0, 0.9))
    p.grad = r(4)
    opt.step()
    ckpt = {
        "model": {"netG": netG, "netD": netD, "netC": netC},
        "optimizers": {"optimizer_G": opt.state_dict()},
        "epoch": 3,
    }
    path = os.path.join(OUT, "state_epoch_tiny.pth")
    torch.save(ckpt, path)

    expected = {}
    flatten(ckpt, "", expected)
    save_file(expected, os.path.join(OUT, "expected.safetensors"))

    # A pickle that, if unpickled by Python, would run `os.system("touch PWNED")`. Written by
    # hand in a torch-style zip so the reader reaches the pickle VM.
    evil = (
        b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01"
        b"cos\nsystem\nq\x02X\x0b\x00\x00\x00touch PWNEDq\x03\x85q\x04Rq\x05u."
    )
    with zipfile.ZipFile(os.path.join(OUT, "evil.pth"), "w") as z:
        z.writestr("evil/data.pkl", evil)
        z.writestr("evil/version", "3\n")
    # Sanity: pickletools can disassemble it (it is a well-formed pickle).
    import pickletools, io
    pickletools.dis(io.BytesIO(evil), out=io.StringIO())
    print("wrote", sorted(os.listdir(OUT)), "tensors:", sorted(expected))


if __name__ == "__main__":
    main()

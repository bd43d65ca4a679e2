#!/usr/bin/env python3
"""Check that real torch loads tests/fixtures/pth/written_by_ratlip.pth (written by ratlip's
save_pth) as exactly the values ratlip meant, in every way the authors' code might load it.

The expected values are rebuilt here from the same recipe as `written_value()` in
tests/pth.rs (not read from the file); change both together. Regenerate the file with
    cargo test --test pth -- --ignored write_fixture_for_torch_check
then run
    /work/venv-ref/bin/python tools/reference/pth_check.py
CI has no Python; the Rust test `written_bytes_match_the_torch_checked_fixture` keeps the
bytes equal to the file this script passed on.
"""

import math
import os
import struct
import sys
from collections import OrderedDict

import torch

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "pth", "written_by_ratlip.pth")


def f32(values, shape):
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


def from_bits(bits):
    return torch.tensor([struct.unpack("<f", struct.pack("<I", b))[0] for b in bits], dtype=torch.float32)


def expected():
    net_g = OrderedDict(
        [
            ("fc.weight", (torch.arange(12, dtype=torch.float32) * 0.5 - 2.0).reshape(4, 3)),
            ("fc.bias", from_bits([0x00000000, 0x80000000, 0x00000001, 0x7F7FFFFF])),
            ("bn.weight", torch.arange(1, 5, dtype=torch.float32) / 10.0),
            ("bn.bias", f32([-1.5, 0.25, 8.0, -0.125], [4])),
            ("bn.running_mean", f32([0.5, -0.5, 0.0, 1.0], [4])),
            ("bn.running_var", f32([1.0, 2.0, 0.5, 4.0], [4])),
            ("bn.num_batches_tracked", torch.tensor(16777216, dtype=torch.int64)),
        ]
    )
    net_d = OrderedDict(
        [
            ("conv.weight", (torch.arange(18, dtype=torch.float32) / 7.0).reshape(2, 1, 3, 3)),
            ("special", from_bits([0x7FC00000, 0x7F800000, 0xFF800000])),
            ("scalar", torch.tensor(3.5, dtype=torch.float32)),
            ("empty", torch.zeros(0, 3, dtype=torch.float32)),
            ("steps", torch.tensor([-5, 0, 1 << 40], dtype=torch.int64)),
        ]
    )
    return {
        "model": {"netG": net_g, "netD": net_d, "netC": OrderedDict()},
        "epoch": 42,
        "lr": 1e-4,
        "name": "ratlip \u2713 \u03b1",
        "resumed": False,
        "history": [-1, 255, 256, 65536, -2147483648, 1 << 40, -(2**63), 2**63 - 1, -0.0, None, "cpu"],
        "note": None,
    }


def compare(got, want, path, meta=False):
    """Exact comparison: same Python types (dict vs OrderedDict, int vs bool vs float), same
    tensor dtype, shape, stride and bits."""
    where = path or "<root>"
    assert type(got) is type(want), f"{where}: {type(got).__name__}, expected {type(want).__name__}"
    if isinstance(want, dict):
        assert list(got.keys()) == list(want.keys()), f"{where}: keys {list(got)} != {list(want)}"
        for k in want:
            compare(got[k], want[k], f"{path}.{k}" if path else k, meta)
    elif isinstance(want, list):
        assert len(got) == len(want), f"{where}: {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            compare(g, w, f"{path}[{i}]", meta)
    elif isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype}, expected {want.dtype}"
        assert got.shape == want.shape, f"{where}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        assert got.stride() == want.stride(), f"{where}: stride {got.stride()}, expected {want.stride()}"
        assert not got.requires_grad, f"{where}: requires_grad"
        if meta:
            assert got.device.type == "meta", f"{where}: on {got.device}"
            return
        assert got.device.type == "cpu", f"{where}: on {got.device}"
        view = torch.int32 if want.dtype == torch.float32 else torch.int64
        assert torch.equal(got.view(view), want.view(view)), f"{where}: {got} != {want} (bitwise)"
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


class G(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)
        self.bn = torch.nn.BatchNorm1d(4)


def main():
    want = expected()
    checks = [
        ("torch.load(path)", dict(), False),
        ("torch.load(path, weights_only=True)", dict(weights_only=True), False),
        ("torch.load(path, weights_only=False)", dict(weights_only=False), False),
        ("torch.load(path, mmap=True, weights_only=True)", dict(mmap=True, weights_only=True), False),
        ("torch.load(path, map_location='meta', weights_only=True)", dict(map_location="meta", weights_only=True), True),
    ]
    print(f"torch {torch.__version__}, file {os.path.normpath(PATH)} ({os.path.getsize(PATH)} bytes)")
    failed = 0
    for label, kwargs, meta in checks:
        try:
            got = torch.load(PATH, **kwargs)
            compare(got, want, "", meta)
            extra = ""
            if kwargs.get("mmap"):
                # Storages used in place from the mapped file: their addresses must be aligned.
                ptrs = [t.data_ptr() for sd in got["model"].values() for t in sd.values() if t.numel()]
                bad = [p for p in ptrs if p % 64]
                assert not bad, f"{len(bad)} storages not 64-byte aligned in the mapping"
                extra = f" ({len(ptrs)} mapped storages, all 64-byte aligned)"
            print(f"ok   {label}{extra}")
        except Exception as e:  # report every way of loading, then fail
            failed += 1
            print(f"FAIL {label}: {type(e).__name__}: {e}")

    # The point of the export: the authors' modules accept the state dict strictly, including
    # BatchNorm's int64 num_batches_tracked.
    try:
        ckpt = torch.load(PATH, weights_only=True)
        g = G()
        res = g.load_state_dict(ckpt["model"]["netG"], strict=True)
        assert not res.missing_keys and not res.unexpected_keys, res
        assert g.bn.num_batches_tracked.item() == 16777216 and g.bn.num_batches_tracked.dtype == torch.int64
        assert torch.equal(g.fc.weight.detach(), want["model"]["netG"]["fc.weight"])
        g.eval()
        y = g.bn(g.fc(torch.ones(2, 3)))
        assert torch.isfinite(y[:, [0, 2, 3]]).all()
        print("ok   G().load_state_dict(ckpt['model']['netG'], strict=True) and a forward pass")
    except Exception as e:
        failed += 1
        print(f"FAIL load_state_dict: {type(e).__name__}: {e}")

    n = sum(1 for sd in want["model"].values() for _ in sd)
    print(f"{n} tensors and {len(want) - 1} other top-level values compared bit-exactly" if not failed else f"{failed} check(s) failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

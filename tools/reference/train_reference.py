#!/usr/bin/env python3
"""PyTorch reference for ONE training step of the GALIP/RATLIP objective (MODEL.md §5), with the
released train loop's semantics (tobran/GALIP code/lib/modules.py: train(), MA_GP_FP32):

  D step: L_real = mean relu(1 - NetC(NetD(feats_r), s)); L_mis with s[i+1] (torch.cat((s[1:], s[:1])),
          detached); fake = G(z, s) once, BN in train mode; L_fake on NetD(feats_f.detach());
          MA-GP = 2 mean_b ||(d out/d feats_r, d out/d s)_b||^6 with create_graph=True;
          L_D = L_real + (L_fake + L_mis)/2 + MA-GP; Adam(NetD+NetC, 4e-4, betas (0, 0.9)).
  G step: on the SAME fake graph, NetD/NetC after their update:
          L_G = -mean NetC(NetD(feats_f), s) - 4 mean cos(emb_f, s); Adam(G, 1e-4, betas (0, 0.9)).

Model weights: model_reference.py's random weights (seed 3) on a config smaller
than the model_tiny one (ngf 8, sa_groups 4, CLIP widths 16, d_out 8) so that the fixtures stay small; the model file is written
next to the step reference.  B = 2.

  /work/venv-ref/bin/python tools/reference/train_reference.py [OUT_DIR [SEED_GALIP SEED_RATLIP]]
  (default tests/fixtures/train_tiny, seeds 3 3)

Writes, per arch (galip, ratlip):
  {arch}.safetensors       ratlip model file (the weights before the step)
  {arch}_step.safetensors  images, sent_emb, noise; loss.{real,mis,fake,magp,d,g,g_adv,cos} ([1] each);
                           grad.netD.* / grad.netC.* (of L_D; NetD's unused conv_s absent: None in torch),
                           magp_grad.netD.* / magp_grad.netC.* (of MA-GP alone; absent where torch's is None), grad.netG.* (of L_G),
                           after.net{D,C,G}.* (trainable parameters after both Adam steps) and
                           after.netG.*running_{mean,var} (BN running statistics after the step).
"""
import copy
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_reference as mr  # noqa: E402

ARCHS = ["galip", "ratlip"]
LR_G, LR_D, BETAS, EPS, SIM_W = 1e-4, 4e-4, (0.0, 0.9), 1e-8, 4.0


def train_config(arch):
    cfg = mr.tiny_config(arch)
    cfg["ngf"] = 8
    cfg["sa_groups"] = 4
    cfg["clip"]["vision"]["width"] = 16
    cfg["clip"]["text"]["width"] = 16
    cfg["d_out"] = 8  # != the CLIP width, so NetD.main uses its learned (biased) shortcut as at full size
    return cfg


def ma_gp(img, sent, out):
    grads = torch.autograd.grad(outputs=out, inputs=(img, sent), grad_outputs=torch.ones(out.size()),
                                retain_graph=True, create_graph=True, only_inputs=True)
    grad = torch.cat((grads[0].reshape(grads[0].size(0), -1), grads[1].reshape(grads[1].size(0), -1)), dim=1)
    grad_l2norm = torch.sqrt(torch.sum(grad ** 2, dim=1))
    return 2.0 * torch.mean(grad_l2norm ** 6)


def optimisers(netG, netD, netC):
    optG = torch.optim.Adam(netG.parameters(), lr=LR_G, betas=BETAS, eps=EPS)
    optD = torch.optim.Adam(list(netD.parameters()) + list(netC.parameters()), lr=LR_D, betas=BETAS, eps=EPS)
    return optG, optD


def released_step(nets, opts, images, sent_emb, noise, sel, record=None):
    """One step of the released loop; returns the loss tensors. With `record` (a dict), also
    stores MA-GP's own parameter gradients (an extra backward) and every gradient."""
    clip, netG, netD, netC = nets
    optG, optD = opts
    dparams = [(f"netD.{k}", p) for k, p in netD.named_parameters()] + [(f"netC.{k}", p) for k, p in netC.named_parameters()]

    # ---- D step ----
    optD.zero_grad()
    real = images.clone().requires_grad_()
    sent = sent_emb.clone().requires_grad_()
    CLIP_real, _ = mr.clip_image_features(clip, real, sel)
    real_feats = netD(CLIP_real)
    pred_real = netC(real_feats, sent)
    errD_real = torch.mean(F.relu(1.0 - pred_real))
    mis_sent = torch.cat((sent[1:], sent[0:1]), dim=0).detach()
    errD_mis = torch.mean(F.relu(1.0 + netC(real_feats, mis_sent)))
    fake = netG(noise, sent)
    CLIP_fake, fake_emb = mr.clip_image_features(clip, fake, sel)
    fake_feats = netD(CLIP_fake.detach())
    errD_fake = torch.mean(F.relu(1.0 + netC(fake_feats, sent)))
    errD_MAGP = ma_gp(CLIP_real, sent, pred_real)
    errD = errD_real + (errD_fake + errD_mis) / 2.0 + errD_MAGP
    if record is not None:
        # None where MA-GP does not depend on the parameter (the unused conv_s; biases, which do
        # not enter the input gradient): absent from the fixture.
        magp_grads = torch.autograd.grad(errD_MAGP, [p for _, p in dparams], retain_graph=True, allow_unused=True)
    errD.backward()
    if record is not None:
        for (n, _), g in zip(dparams, magp_grads):
            if g is not None:
                record[f"magp_grad.{n}"] = g
        for n, p in dparams:
            if p.grad is None:
                assert ".conv_s." in n, n
                continue
            record[f"grad.{n}"] = p.grad.clone()
    optD.step()

    # ---- G step (same fake, D updated) ----
    optG.zero_grad()
    output = netC(netD(CLIP_fake), sent)
    text_img_sim = torch.cosine_similarity(fake_emb, sent).mean()
    errG_adv = -output.mean()
    errG = errG_adv - SIM_W * text_img_sim
    errG.backward()
    if record is not None:
        for k, p in netG.named_parameters():
            if k.startswith("mapping.CLIP_ViT."):
                assert p.grad is None, k
                continue
            record[f"grad.netG.{k}"] = p.grad.clone()
    optG.step()
    return {"real": errD_real, "mis": errD_mis, "fake": errD_fake, "magp": errD_MAGP, "d": errD,
            "g": errG, "g_adv": errG_adv, "cos": text_img_sim}


def run_arch(cfg, out_dir, seed=0, B=2):
    arch = cfg["arch"]
    torch.manual_seed(seed)
    clip, netG, netD, netC = mr.build(cfg)
    S, z, cd, sel = cfg["image_size"], cfg["z_dim"], cfg["cond_dim"], cfg["clip_features"]
    model_tensors = mr.model_file_tensors(clip, netG, netD, netC)

    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.rand(B, 3, S, S, generator=gen) * 2 - 1
    sent_emb = torch.randn(B, cd, generator=gen)
    noise = torch.randn(B, z, generator=gen)

    netG.train(), netD.train(), netC.train()
    # The released optimisers: netG.parameters() includes the mapper's frozen CLIP_ViT (grad None,
    # skipped by Adam); NetD's unused conv_s likewise.
    optG, optD = optimisers(netG, netD, netC)
    ref = {"images": images, "sent_emb": sent_emb, "noise": noise}
    losses = released_step((clip, netG, netD, netC), (optG, optD), images, sent_emb, noise, sel, record=ref)

    for prefix, net in (("netD.", netD), ("netC.", netC), ("netG.", netG)):
        for k, p in net.named_parameters():
            if not k.startswith("mapping.CLIP_ViT."):
                ref[f"after.{prefix}{k}"] = p.detach().clone()
    for k, b in netG.named_buffers():
        if k.endswith("running_mean") or k.endswith("running_var"):
            ref[f"after.netG.{k}"] = b.clone()

    for k, v in losses.items():
        ref[f"loss.{k}"] = v.detach().reshape(1)
    ref = {k: v.detach().float().contiguous() for k, v in ref.items()}
    meta = {"ratlip_config": mr.config_json(cfg), "arch": arch, "batch": str(B), "seed": str(seed),
            "torch": torch.__version__, "generator": "tools/reference/train_reference.py",
            "adam": f"lr_G {LR_G} lr_D {LR_D} betas {BETAS} eps {EPS}"}
    for k, v in losses.items():
        meta[f"loss.{k}"] = f"{v.item():.9g}"
    os.makedirs(out_dir, exist_ok=True)
    mr.save_file(dict(model_tensors), os.path.join(out_dir, f"{arch}.safetensors"),
                 metadata={"ratlip_config": mr.config_json(cfg)})
    mr.save_file(ref, os.path.join(out_dir, f"{arch}_step.safetensors"), metadata=meta)
    gmagp = max(v.abs().max().item() for k, v in ref.items() if k.startswith("magp_grad."))
    gd = max(v.abs().max().item() for k, v in ref.items() if k.startswith("grad.net") and not k.startswith("grad.netG"))
    print(arch, {k: round(v.item(), 6) for k, v in losses.items()}, f"max|magp_grad| {gmagp:.4g} max|grad D| {gd:.4g}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "tests", "fixtures", "train_tiny")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    # Seeds whose B = 2 batch leaves every hinge term active (a dead term would hide its gradient).
    seeds = [int(a) for a in sys.argv[2:]] or [3, 3]
    for arch, seed in zip(ARCHS, seeds):
        run_arch(train_config(arch), out, seed)
    print("wrote", os.path.abspath(out), {f: os.path.getsize(os.path.join(out, f)) for f in sorted(os.listdir(out))})


if __name__ == "__main__":
    main()

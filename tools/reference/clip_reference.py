"""PyTorch reference for ratlip's CLIP: writes parity fixtures into tests/fixtures/.

Builds a Hugging Face CLIPModel with random weights (a tiny config by default, or ViT-B/32
with --full), saves it as a user would have it (config.json + model.safetensors, HF names)
and an OpenAI-named copy, then records, on fixed inputs:
  - text: token ids, word embeddings (last hidden state after ln_final), sentence embedding;
  - image: pixels, the token maps after the selected blocks as [width, grid, grid], the
    projected image embedding;
  - mapper (MODEL.md §3, GALIP's CLIP_Mapper): fused map + prompts -> [width, grid, grid];
  - gradients by torch autograd of sum(output * w) for fixed random w: w.r.t. the pixels,
    the token-embedding rows and the mapper's inputs.
The mapper and the GALIP-style image encoder are written here from MODEL.md on top of the
HF modules, and the HF outputs they share are asserted equal first.

  python tools/reference/clip_reference.py            # tiny, committed, read by CI
  python tools/reference/clip_reference.py --full --out /tmp/clip_b32   # ViT-B/32, once
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

torch.manual_seed(0)


def tiny_config(vocab):
    return CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5, eos_token_id=vocab - 1, bos_token_id=vocab - 2, pad_token_id=0),
        vision_config=dict(hidden_size=48, intermediate_size=192, num_hidden_layers=3, num_attention_heads=3,
                           image_size=32, patch_size=8, hidden_act="quick_gelu", layer_norm_eps=1e-5),
        projection_dim=24,
    )


def full_config():
    return CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                         eos_token_id=49407, bos_token_id=49406, pad_token_id=1),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=32, hidden_act="quick_gelu"),
        projection_dim=512,
    )


def randomize(model):
    # HF's init leaves LayerNorms at 1/0 and some projections tiny; random everything so that
    # every weight matters to the comparison.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p) if p.dim() > 1 else 0.02 * torch.randn_like(p))
            if "embedding" in name:
                p.mul_(4.0)


def run_layer(layer, x, causal=None):
    # transformers' CLIPEncoderLayer signature changed across versions; call its parts.
    r = x
    h = layer.layer_norm1(x)
    attn = layer.self_attn
    B, T, W = h.shape
    H = attn.num_heads
    q = attn.q_proj(h).view(B, T, H, -1).transpose(1, 2)
    k = attn.k_proj(h).view(B, T, H, -1).transpose(1, 2)
    v = attn.v_proj(h).view(B, T, H, -1).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) * attn.scale
    if causal:
        mask = torch.full((T, T), float("-inf")).triu(1)
        s = s + mask
    o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, W)
    x = r + attn.out_proj(o)
    return x + layer.mlp(layer.layer_norm2(x))


def openai_names(sd, cfg):
    out = {}
    for tower, dst, n in [("text_model", "", cfg.text_config.num_hidden_layers),
                          ("vision_model", "visual.", cfg.vision_config.num_hidden_layers)]:
        for i in range(n):
            s, d = f"{tower}.encoder.layers.{i}", f"{dst}transformer.resblocks.{i}"
            for kind in ["weight", "bias"]:
                out[f"{d}.attn.in_proj_{kind}"] = torch.cat([sd[f"{s}.self_attn.{p}_proj.{kind}"] for p in "qkv"])
                for a, b in [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]:
                    out[f"{d}.{b}.{kind}"] = sd[f"{s}.{a}.{kind}"]
    ren = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
           "text_model.embeddings.position_embedding.weight": "positional_embedding",
           "text_model.final_layer_norm.weight": "ln_final.weight", "text_model.final_layer_norm.bias": "ln_final.bias",
           "vision_model.embeddings.class_embedding": "visual.class_embedding",
           "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
           "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
           "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight", "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
           "vision_model.post_layernorm.weight": "visual.ln_post.weight", "vision_model.post_layernorm.bias": "visual.ln_post.bias",
           "logit_scale": "logit_scale"}
    for a, b in ren.items():
        out[b] = sd[a]
    out["text_projection"] = sd["text_projection.weight"].t()
    out["visual.proj"] = sd["visual_projection.weight"].t()
    return {k: v.contiguous() for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../tests/fixtures/clip_tiny"))
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    vocab = 1000
    cfg = full_config() if args.full else tiny_config(vocab)
    model = CLIPModel(cfg).eval()
    randomize(model)
    os.makedirs(args.out, exist_ok=True)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}
    save_file(sd, os.path.join(args.out, "model.safetensors"))
    cfg_dict = cfg.to_dict()
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=1, default=str)
    # OpenAI files do not record head counts (build_model assumes 64-wide heads); ratlip's
    # own files carry the config in the header, as this copy does.
    ours = {"text": {"width": cfg.text_config.hidden_size, "layers": cfg.text_config.num_hidden_layers,
                     "heads": cfg.text_config.num_attention_heads,
                     "context_length": cfg.text_config.max_position_embeddings,
                     "vocab_size": cfg.text_config.vocab_size},
            "vision": {"width": cfg.vision_config.hidden_size, "layers": cfg.vision_config.num_hidden_layers,
                       "heads": cfg.vision_config.num_attention_heads, "patch_size": cfg.vision_config.patch_size,
                       "image_size": cfg.vision_config.image_size},
            "embed_dim": cfg.projection_dim, "layer_norm_eps": 1e-5}
    save_file(openai_names(sd, cfg), os.path.join(args.out, "openai.safetensors"),
              metadata={"clip_config": json.dumps(ours)})

    tc, vc = cfg.text_config, cfg.vision_config
    B, T = args.batch, tc.max_position_embeddings
    eos = tc.eos_token_id if not args.full else 49407
    bos = eos - 1
    ids = torch.zeros(B, T, dtype=torch.long)
    lengths = [5, T] if B >= 2 else [5]
    for b in range(B):
        n = lengths[b % len(lengths)]
        ids[b, 0] = bos
        ids[b, 1:n - 1] = torch.randint(1, bos - 1, (n - 2,))
        ids[b, n - 1] = eos
    g = vc.image_size // vc.patch_size
    W = vc.hidden_size
    pixels = torch.randn(B, 3, vc.image_size, vc.image_size, requires_grad=True)
    selected = [i for i in ([1, 4, 8] if args.full else [0, 1, 2])]
    n_prompts = min(8, vc.num_hidden_layers - 1)

    # ---- text ----
    tok_out = {}
    def keep(_m, _i, o):
        o.retain_grad()
        tok_out["emb"] = o
    h = model.text_model.embeddings.token_embedding.register_forward_hook(keep)
    t = model.text_model(input_ids=ids)
    h.remove()
    word = t.last_hidden_state
    sent = model.text_projection(t.pooler_output)
    w_word, w_sent = torch.randn_like(word), torch.randn_like(sent)
    ((word * w_word).sum() + (sent * w_sent).sum()).backward()
    grad_tok = tok_out["emb"].grad

    # ---- image (GALIP's CLIP_IMG_ENCODER on HF modules) ----
    vm = model.vision_model
    v = vm(pixel_values=pixels, output_hidden_states=True)
    img_emb = model.visual_projection(v.pooler_output)
    x = vm.pre_layrnorm(vm.embeddings(pixels))
    feats = []
    for i, layer in enumerate(vm.encoder.layers):
        x = run_layer(layer, x)
        assert torch.allclose(x, v.hidden_states[i + 1], atol=1e-4), f"layer {i}"
        if i in selected:
            feats.append(x[:, 1:, :].permute(0, 2, 1).reshape(B, W, g, g))
    feats = torch.stack(feats, 1)
    own_emb = model.visual_projection(vm.post_layernorm(x[:, 0, :]))
    assert torch.allclose(own_emb, img_emb, atol=1e-4)
    w_feats, w_img = torch.randn_like(feats), torch.randn_like(img_emb)
    pixels.grad = None
    ((feats * w_feats).sum() + (img_emb * w_img).sum()).backward()
    grad_pixels = pixels.grad.clone()

    # ---- mapper (MODEL.md §3) ----
    fused = torch.randn(B, W, g, g, requires_grad=True)
    prompts = torch.randn(B, n_prompts, W, requires_grad=True)
    emb = vm.embeddings
    y = fused.reshape(B, W, -1).permute(0, 2, 1)
    y = torch.cat([emb.class_embedding.expand(B, 1, W), y], 1) + emb.position_embedding.weight
    y = vm.pre_layrnorm(y)
    for i, layer in enumerate(vm.encoder.layers):
        if 1 <= i <= n_prompts:
            y = run_layer(layer, torch.cat([y, prompts[:, i - 1:i, :]], 1))[:, :-1, :]
        else:
            y = run_layer(layer, y)
    mapped = y[:, 1:, :].permute(0, 2, 1).reshape(B, W, g, g)
    w_mapped = torch.randn_like(mapped)
    (mapped * w_mapped).sum().backward()

    d = lambda t: t.detach().contiguous().float()
    fixture = {
        "ids": ids.float(), "word_embs": d(word), "sent_emb": d(sent), "w_word": d(w_word), "w_sent": d(w_sent),
        "grad_token_embs": d(grad_tok),
        "pixels": d(pixels), "feats": d(feats), "img_emb": d(img_emb), "w_feats": d(w_feats), "w_img": d(w_img),
        "grad_pixels": d(grad_pixels),
        "fused": d(fused), "prompts": d(prompts), "mapped": d(mapped), "w_mapped": d(w_mapped),
        "grad_fused": d(fused.grad), "grad_prompts": d(prompts.grad),
    }
    meta = {"selected_blocks": json.dumps(selected), "n_prompts": str(n_prompts),
            "torch": torch.__version__, "generator": "tools/reference/clip_reference.py"}
    save_file(fixture, os.path.join(args.out, "reference.safetensors"), metadata=meta)
    print("wrote", args.out, {k: tuple(v.shape) for k, v in fixture.items()})


if __name__ == "__main__":
    main()

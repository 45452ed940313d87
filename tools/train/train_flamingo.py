"""Stage 3: train the Flamingo part (Perceiver Resampler, gated cross-attention blocks, the
<image> / <|endofchunk|> embedding rows) on interleaved sequences, vision tower and LM frozen.

As open_flamingo/train/train_utils.py (MMC4 branch): labels = input ids with pad, <image>,
every token before the first <image> and every token between an <|endofchunk|> and the next
<image> masked (-100); the input-embedding gradient is masked to the <image> and
<|endofchunk|> rows; AdamW with weight decay only on the gated_cross_attn parameters
(train.py get_grouped_params); cosine schedule with warmup; gradient clipping 1.0.

The frozen vision tower is run once per bank image (WORK/bank.npz) and its patch tokens are
cached; each step then does exactly Flamingo.forward minus the (frozen, no-grad) vision
call: perceiver(tokens) -> condition every FlamingoLayer -> lang_encoder(ids, mask, labels).

Sequences: data.sample_sequence (1-5 images; captioning, VQA, class names and the in-context
naming task; the naming task is half of the documents in the first WORDS_WARM steps).
Writes WORK/checkpoint.pt (filter_state_dict_to_trainable layout, as the released OpenFlamingo
checkpoint.pt files).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import SEED, WORK, Timer, pixels_from_uint8, seed_all  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
import model as model_mod  # noqa: E402
from pretrain_vision import BANK_ANY, BANK_MONO  # noqa: E402

STEPS = int(os.environ.get("FLAMINGO_STEPS", "3000"))
BATCH = int(os.environ.get("FLAMINGO_BATCH", "16"))
MAX_IMAGES = int(os.environ.get("FLAMINGO_MAX_IMAGES", "5"))
LR = float(os.environ.get("FLAMINGO_LR", "1.5e-3"))
# the first WORDS_WARM steps draw half of the documents from the naming task (the cross-attention
# finds the in-context retrieval path much faster with a dense signal), then data.TASK_WEIGHTS
WORDS_WARM = 500
WARM_WEIGHTS = [("caption", 0.2), ("vqa", 0.24), ("words", 0.5), ("classname", 0.06)]
WARMUP = 40
WEIGHT_DECAY = 0.1


@torch.no_grad()
def encode_bank(visual, pixels: np.ndarray, bs: int = 250) -> torch.Tensor:
    out = []
    for i in range(0, len(pixels), bs):
        out.append(visual(pixels_from_uint8(pixels[i:i + bs]))[1])
    return torch.cat(out)


def openflamingo_labels(input_ids, tok, media_id, eoc_id):
    """open_flamingo/train/train_utils.py train_one_epoch, MMC4 branch."""
    labels = input_ids.clone()
    labels[labels == tok.pad_token_id] = -100
    for i in range(labels.shape[0]):
        label_idx = 0
        while label_idx < labels.shape[1] and labels[i][label_idx] != media_id:
            labels[i][label_idx] = -100
            label_idx += 1
        for eoc_idx in torch.where(labels[i] == eoc_id)[0]:
            token_idx = eoc_idx + 1
            while token_idx < labels.shape[1] and labels[i][token_idx] != media_id:
                labels[i][token_idx] = -100
                token_idx += 1
    labels[labels == media_id] = -100
    return labels


def make_batch(rng, bank, feats, tok, n, max_images=MAX_IMAGES, task=None, n_images=None, weights=None):
    seqs = [data.sample_sequence(rng, max_images=max_images, task=task, n_images=n_images, scene_fn=bank.scene_fn,
                                 weights=weights) for _ in range(n)]
    texts = [data.sequence_text(ch) for _, ch in seqs]
    imgs = [[bank.index[id(c.scene)] for c in ch if c.scene is not None] for _, ch in seqs]
    enc = tok(texts, padding="longest", return_tensors="pt")
    T = max(len(x) for x in imgs)
    vis = torch.zeros(n, T, 1, feats.shape[1], feats.shape[2])
    for b, ix in enumerate(imgs):
        if ix:
            vis[b, :len(ix), 0] = feats[ix]
    return seqs, enc["input_ids"], enc["attention_mask"], vis


def forward(model, vis_tokens, ids, mask, labels=None):
    """Flamingo.forward with the vision tower's output given (it is frozen and run under
    no_grad inside Flamingo._encode_vision_x anyway)."""
    vis = model.perceiver(vis_tokens)
    for layer in model.lang_encoder._get_decoder_layers():
        layer.condition_vis_x(vis)
    model._condition_media_locations(input_ids=ids)
    out = model.lang_encoder(input_ids=ids, attention_mask=mask, labels=labels)
    model.lang_encoder.clear_conditioned_layers()
    return out


@torch.no_grad()
def probe(model, tok, bank, feats, seed=SEED + 500):
    """Teacher-forced accuracy of the answer's first token on fresh sequences: naming task
    (last chunk, answer seen before in context) with 5 images, and VQA answers."""
    rng = random.Random(seed)
    res = {}
    for task, n_img in (("words", 5), ("vqa", 3), ("caption", 2)):
        seqs, ids, mask, vis = make_batch(rng, bank, feats, tok, 32, task=task, n_images=n_img)
        logits = forward(model, vis, ids, mask).logits
        correct = total = 0
        key = "Short answer:" if task != "caption" else "Output:"
        for b, (_, chunks) in enumerate(seqs):
            last = chunks[-1].text
            ans = last.split(key)[1].replace("<|endofchunk|>", "")
            first = tok.encode(ans, add_special_tokens=False)[0]
            # position of the last chunk's answer: the first token after the last `key`
            row = ids[b][mask[b].bool()].tolist()
            n_ans = len(tok.encode(ans, add_special_tokens=False))
            pos = len(row) - 1 - n_ans  # index of the answer's first token
            correct += int(logits[b, pos - 1].argmax().item() == first)
            total += 1
        res[task] = correct / total
    return res


def main():
    seed_all(SEED + 20)
    model, tok = model_mod.build(attn_implementation="sdpa")
    media_id = tok.convert_tokens_to_ids("<image>")
    eoc_id = tok.convert_tokens_to_ids("<|endofchunk|>")
    with Timer("flamingo: encode bank"):
        bank = data.Bank(SEED + 11, BANK_ANY, BANK_MONO)  # the scenes of stage 2's bank
        pix = np.load(WORK / "bank.npz")["pixels"]
        assert len(pix) == len(bank.scenes)
        feats = encode_bank(model.vision_encoder, pix)
    print(f"bank features {tuple(feats.shape)}")

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_train = sum(p.numel() for _, p in named)
    print(f"trainable parameters: {n_train / 1e6:.2f} M (embedding rows other than <image>/<|endofchunk|> get zero gradient)")
    opt = torch.optim.AdamW([
        {"params": [p for n, p in named if "gated_cross_attn" in n], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in named if "gated_cross_attn" not in n], "weight_decay": 0.0},
    ], lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / STEPS)))))
    emb = model.lang_encoder.get_input_embeddings()
    grad_mask = torch.zeros_like(emb.weight)
    grad_mask[media_id] = 1
    grad_mask[eoc_id] = 1
    rng = random.Random(SEED + 21)
    trainable = [p for _, p in named]
    losses = []
    with Timer("flamingo: training"):
        t0 = time.time()
        model.train()
        model.vision_encoder.eval()
        for step in range(STEPS):
            _, ids, mask, vis = make_batch(rng, bank, feats, tok, BATCH,
                                           weights=WARM_WEIGHTS if step < WORDS_WARM else None)
            labels = openflamingo_labels(ids, tok, media_id, eoc_id)
            loss = forward(model, vis, ids, mask, labels).loss
            loss.backward()
            emb.weight.grad *= grad_mask
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if step % 50 == 0 or step == STEPS - 1:
                msg = f"flamingo step {step} loss {np.mean(losses[-50:]):.4f} ({time.time() - t0:.0f} s)"
                if step % 300 == 0 or step == STEPS - 1:
                    model.eval()
                    msg += f" probe {probe(model, tok, bank, feats)}"
                    model.train()
                print(msg, flush=True)
        model.eval()
    gates = {i: (round(float(l.gated_cross_attn_layer.attn_gate), 3), round(float(l.gated_cross_attn_layer.ff_gate), 3))
             for i, l in enumerate(model.lang_encoder._get_decoder_layers()) if l.gated_cross_attn_layer is not None}
    print(f"gates (attn, ff) per layer: {gates}")
    sd = model_mod.filter_state_dict_to_trainable(model, model.state_dict())
    sd = {k: v.detach().clone().contiguous() for k, v in sd.items()}
    torch.save(sd, WORK / "checkpoint.pt")
    print(f"checkpoint.pt: {len(sd)} tensors, {sorted({k.split('.')[0] + '.' + k.split('.')[1] for k in sd})}")
    common.write_json(WORK / "flamingo_stats.json", {
        "steps": STEPS, "batch": BATCH, "lr": LR, "max_images": MAX_IMAGES, "words_warm_steps": WORDS_WARM,
        "task_weights": data.TASK_WEIGHTS, "warm_task_weights": WARM_WEIGHTS, "final_loss": round(float(np.mean(losses[-50:])), 4),
        "loss_curve": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)],
        "probe": probe(model, tok, bank, feats), "gates": gates, "trainable_parameters": n_train})


if __name__ == "__main__":
    main()

"""Stage 1: tokenizer + language-model pretraining on the text of the synthetic documents.

* Tokenizer: byte-level BPE (GPT-NeoX style: NFC, GPT-2 regex without prefix space,
  <|endoftext|> = 0, <|padding|> = 1, no BOS) trained with HF `tokenizers` on the synthetic
  text (up to TOKENIZER_VOCAB entries; the small corpus gives 409), then OpenFlamingo's tokens
  added exactly as open_flamingo/src/factory.py does (<|endofchunk|>, <image> as additional
  special tokens, <PAD> because there is no pad token).  The tokens are added *before* LM
  pretraining, so the LM's (untied) output head has trained rows for <|endofchunk|> and
  factory.py's add_special_tokens / resize_token_embeddings are no-ops afterwards (a release's
  checkpoint.pt cannot carry output-head rows of an untied head, spec/50).
* LM: transformers LlamaForCausalLM (common.LM), trained from scratch on packed 512-token rows
  of documents in the exact interleaved formats, <image> markers included (they carry no
  information for the LM alone, so captions and answers are learnt as priors).
* In-context retrieval: a frozen 4-layer LM trained for a few minutes does not develop a
  text induction circuit (measured: the word of the naming task stays at chance), and the
  cross-attention cannot move information between chunks - only the LM's self-attention can.
  So CODED_SHARE of the documents are naming-task documents whose every token of chunk k
  (from its <image> to the "\n" after its <|endofchunk|>, OpenFlamingo's text_time span)
  gets a per-colour code vector added to its token embedding (a 6 x hidden table trained
  with the LM and discarded afterwards): a stand-in for the image, which the gated
  cross-attention later adds at exactly those tokens.  The LM learns to copy the word of the
  earlier chunk whose code matches, the in-context mechanism the Flamingo stage drives from
  the pixels.  The saved LM is a plain LlamaForCausalLM.

Writes WORK/lm (save_pretrained: config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, special_tokens_map.json).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets threads / env first)
from common import LM, SEED, TOKENIZER_VOCAB, WORK, Timer, seed_all  # noqa: E402

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

import data  # noqa: E402

LM_DIR = WORK / "lm"
ROW = 512
BATCH = 16
STEPS = int(os.environ.get("LM_STEPS", "500"))
LR = 2e-3
WARMUP = 20
CODED_SHARE = float(os.environ.get("LM_CODED_SHARE", "0.65"))


def add_openflamingo_special_tokens(tok):
    """Exactly open_flamingo/src/factory.py (also tools/reference/make_fixtures.py)."""
    tok.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<PAD>"})
    return tok


def tokenizer_corpus(rng: random.Random, n_docs: int = 6000):
    for _ in range(n_docs):
        _, chunks = data.sample_sequence(rng, max_images=5)
        yield data.sequence_text(chunks).replace("<image>", "").replace("<|endofchunk|>", "\n")


def build_tokenizer():
    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(list(tokenizer_corpus(random.Random(SEED + 1))), trainer)
    base = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    tok = add_openflamingo_special_tokens(base)
    # the words the tasks need should be single tokens (checked, not required)
    for w in common.COLOUR_NAMES + common.SHAPES + common.WORDS + ["small", "large", "yes", "no"]:
        ids = tok.encode(w, add_special_tokens=False)
        if len(ids) != 1:
            print(f"note: {w!r} is {len(ids)} tokens {tok.convert_ids_to_tokens(ids)}")
    return tok


def chunk_codes(ids, chunks, media_id):
    """Per token: the colour index of its chunk (naming task), -1 before the first <image>."""
    cols = [common.COLOUR_NAMES.index(c.colour) for c in chunks]
    k, out = -1, []
    for t in ids:
        k += t == media_id
        out.append(cols[k] if k >= 0 else -1)
    return out


def lm_document(rng: random.Random, tok):
    """(token ids, codes) of one LM-corpus document: CODED_SHARE coded naming-task documents
    (2-24 chunks), otherwise a document of any task (as the Flamingo stage samples them, naming
    task included, uncoded) with 1-33 chunks; codes -1 = none."""
    if rng.random() < CODED_SHARE:
        _, chunks = data.sample_sequence(rng, task="words", n_images=rng.randint(2, 24))
        ids = tok.encode(data.sequence_text(chunks), add_special_tokens=False)
        return ids, chunk_codes(ids, chunks, tok.convert_tokens_to_ids("<image>"))
    r = rng.random()
    n = rng.randint(1, 5) if r < 0.5 else (rng.randint(6, 16) if r < 0.8 else rng.randint(17, 33))
    _, chunks = data.sample_sequence(rng, max_images=max(n, 2), n_images=n)
    ids = tok.encode(data.sequence_text(chunks), add_special_tokens=False)
    return ids, [-1] * len(ids)


def packed_rows(rng, tok, n_rows):
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    ids, codes, rows = [], [], []
    while len(rows) < n_rows:
        i, c = lm_document(rng, tok)
        ids += i + [eot]
        codes += c + [-1]
        while len(ids) >= ROW and len(rows) < n_rows:
            rows.append((ids[:ROW], codes[:ROW]))
            ids, codes = ids[ROW:], codes[ROW:]
    return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def embed(lm, code_table, ids, codes):
    e = lm.get_input_embeddings()(ids)
    return e + code_table(codes.clamp(min=0)) * (codes >= 0).unsqueeze(-1).to(e.dtype)


@torch.no_grad()
def recall_accuracy(lm, tok, code_table, n=48, seed=SEED + 99, coded=True):
    """Accuracy of the naming-task word (first token, teacher forcing) for chunks whose colour
    occurred in an earlier chunk, with the chunk codes (coded=True) or without."""
    rng = random.Random(seed)
    media = tok.convert_tokens_to_ids("<image>")
    answer, colon = tok.convert_tokens_to_ids("\u0120answer"), tok.convert_tokens_to_ids(":")
    correct = total = 0
    for _ in range(n):
        _, chunks = data.sample_sequence(rng, task="words", n_images=rng.randint(4, 12))
        ids = tok.encode(data.sequence_text(chunks), add_special_tokens=False)
        codes = chunk_codes(ids, chunks, media) if coded else [-1] * len(ids)
        x, c = torch.tensor([ids]), torch.tensor([codes])
        logits = lm(inputs_embeds=embed(lm, code_table, x, c)).logits[0]
        seen = set()
        k = -1
        for pos, t in enumerate(ids):
            k += t == media
            if t == colon and pos and ids[pos - 1] == answer:
                if chunks[k].colour in seen:
                    correct += int(logits[pos].argmax().item() == ids[pos + 1])
                    total += 1
                seen.add(chunks[k].colour)
    return correct / max(total, 1)


def main():
    seed_all(SEED)
    with Timer("lm: tokenizer"):
        tok = build_tokenizer()
    V = len(tok)
    print(f"tokenizer: {TOKENIZER_VOCAB} BPE + OpenFlamingo tokens -> V = {V}; "
          f"<|endofchunk|>={tok.convert_tokens_to_ids('<|endofchunk|>')} <image>={tok.convert_tokens_to_ids('<image>')} "
          f"<PAD>={tok.pad_token_id}")
    cfg = LlamaConfig(
        vocab_size=V, hidden_size=LM["hidden_size"], intermediate_size=LM["intermediate_size"],
        num_hidden_layers=LM["layers"], num_attention_heads=LM["heads"], num_key_value_heads=LM["kv_heads"],
        hidden_act="silu", max_position_embeddings=LM["max_position_embeddings"], rms_norm_eps=LM["rms_norm_eps"],
        rope_theta=LM["rope_theta"], tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, use_cache=True,
    )
    cfg._attn_implementation = "sdpa"
    lm = LlamaForCausalLM(cfg)
    print(f"LM parameters: {sum(p.numel() for p in lm.parameters()) / 1e6:.2f} M")
    code_table = torch.nn.Embedding(len(common.COLOUR_NAMES), LM["hidden_size"])
    torch.nn.init.normal_(code_table.weight, std=0.02)
    params = list(lm.parameters()) + list(code_table.parameters())
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.98), weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / STEPS)))))
    rng = random.Random(SEED + 2)
    with Timer("lm: pretraining"):
        lm.train()
        t0 = time.time()
        for step in range(STEPS):
            x, c = packed_rows(rng, tok, BATCH)
            loss = lm(inputs_embeds=embed(lm, code_table, x, c), labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if step % 20 == 0 or step == STEPS - 1:
                msg = f"lm step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)"
                if step % 100 == 0 and step:
                    lm.eval()
                    msg += f" recall {recall_accuracy(lm, tok, code_table, n=24):.3f}"
                    lm.train()
                print(msg, flush=True)
        lm.eval()
    acc = recall_accuracy(lm, tok, code_table)
    acc0 = recall_accuracy(lm, tok, code_table, coded=False)
    print(f"lm: naming-task word accuracy with chunk codes {acc:.3f}, without (text only) {acc0:.3f}")
    LM_DIR.mkdir(parents=True, exist_ok=True)
    lm.config._attn_implementation = "eager"
    lm.save_pretrained(LM_DIR)
    tok.save_pretrained(LM_DIR)
    common.write_json(WORK / "lm_stats.json", {"steps": STEPS, "batch_rows": BATCH, "row_tokens": ROW,
                                               "coded_share": CODED_SHARE, "final_loss": round(loss.item(), 4),
                                               "word_accuracy_coded": acc, "word_accuracy_text_only": acc0, "V": V})


if __name__ == "__main__":
    main()

"""Writes Tests/Fixtures/tokenizers/canonical_keys.json and canonical_keys.golden.json:
a SentencePiece-style BPE vocabulary holding both "é" (U+00E9) and "é" (U+0065 U+0301)
as different tokens (JSON keys that Swift's String equality would merge), and Hugging
Face tokenizers' ids and decodings of strings using each form.

    python3 -m venv /work/tokenv && /work/tokenv/bin/pip install tokenizers==0.23.3
    /work/tokenv/bin/python tools/reference/make_canonical_tokenizer.py
"""
import json
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer

assert tokenizers.__version__ == "0.23.3", tokenizers.__version__
OUT = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "tokenizers"
NFC, NFD = "\u00e9", "e\u0301"
S = "\u2581"

pieces = ["<unk>", S, "a", "c", "e", "f", "\u0301", NFC, NFD, S + NFC, S + NFD, "ca", "caf", "caf" + NFC, "caf" + NFD,
          S + "caf" + NFC, S + "caf" + NFD, S + "c", S + "ca", S + "caf", S + "e"]
merges = [[S, NFC], [S, NFD], ["e", "\u0301"], ["c", "a"], ["ca", "f"], ["caf", NFC], ["caf", NFD],
          [S, "c"], [S + "c", "a"], [S + "ca", "f"], [S + "caf", NFC], [S + "caf", NFD], [S, "e"],
          [S + "e", "\u0301"]]
spec = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [{"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "Metaspace", "replacement": S, "prepend_scheme": "always", "split": True},
    "post_processor": None,
    "decoder": {"type": "Metaspace", "replacement": S, "prepend_scheme": "always", "split": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": {p: i for i, p in enumerate(pieces)}, "merges": merges},
}
text = json.dumps(spec, ensure_ascii=False, indent=1) + "\n"
assert text.count('"' + NFC + '"') and text.count('"' + NFD + '"')
tk = Tokenizer.from_str(text)
assert tk.get_vocab_size() == len(pieces)
strings = [NFC, NFD, "caf" + NFC, "caf" + NFD, f"{NFC} {NFD} {NFC}", NFC + NFD, "caf" + NFD + " caf" + NFC,
           f"e {NFD}e", "\u0301" + NFC]
cases = []
for s in strings:
    ids = tk.encode(s, add_special_tokens=False).ids
    cases.append({"text": s, "ids": ids, "decoded": tk.decode(ids)})
assert len({tuple(c["ids"]) for c in cases[:2]}) == 2, "the two forms must tokenize differently"
(OUT / "canonical_keys.json").write_text(text, encoding="utf-8")
(OUT / "canonical_keys.golden.json").write_text(
    json.dumps({"tokenizers": tokenizers.__version__, "cases": cases}, ensure_ascii=False, indent=1) + "\n",
    encoding="utf-8")
print("\n".join(f"{c['text']!r}: {c['ids']} {c['decoded']!r}" for c in cases))

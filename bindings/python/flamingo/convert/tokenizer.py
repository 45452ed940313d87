"""The output tokenizer.json: the LM's Hugging Face tokenizer with OpenFlamingo's tokens.

open_flamingo/src/factory.py does

    text_tokenizer.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if text_tokenizer.pad_token is None:
        text_tokenizer.add_special_tokens({"pad_token": "<PAD>"})

which, for a `tokenizers`-backed tokenizer, appends AddedToken(content, special=True,
normalized=False, lstrip=False, rstrip=False, single_word=False) entries with ids chosen
by the `tokenizers` AddedVocabulary rule (reproduced in `add_tokens`), and
len(tokenizer) = model vocabulary + added tokens not in it.

Which special tokens the LM's tokenizer has (pad in particular) is read from the
directory's files only (tokenizer_config.json, then special_tokens_map.json, then the
tokenizer.json padding section), as the 2023 fast tokenizers did: transformers 5's
GPTNeoXTokenizer class now defaults pad_token to <|padding|>, which the released
checkpoints (50280 rows = 50277 + 3) were not built with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import ConversionError

OPENFLAMINGO_TOKENS = ["<|endofchunk|>", "<image>"]
PAD_TOKEN = "<PAD>"


def _content(v) -> Optional[str]:
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return v["content"]
    return None


def _read_json(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConversionError(f"{path}: not a JSON object")
    return d


class SpecialTokens:
    """bos/eos/unk/pad contents as transformers reads them from tokenizer_config.json,
    special_tokens_map.json and the tokenizer.json padding section."""

    def __init__(self, lm_dir: Path, tokenizer_json: Optional[dict]):
        cfg = _read_json(lm_dir / "tokenizer_config.json") or {}
        smap = _read_json(lm_dir / "special_tokens_map.json") or {}
        self.sources: Dict[str, str] = {}
        self.values: Dict[str, Optional[str]] = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            val, src = None, None
            for d, name in ((cfg, "tokenizer_config.json"), (smap, "special_tokens_map.json")):
                c = _content(d.get(key))
                if c is not None:
                    val, src = c, name
                    break
            if val is None and key == "pad_token" and tokenizer_json and isinstance(tokenizer_json.get("padding"), dict):
                c = tokenizer_json["padding"].get("pad_token")
                if isinstance(c, str):
                    val, src = c, "tokenizer.json padding"
            self.values[key] = val
            if src:
                self.sources[key] = src
        self.add_bos_token = cfg.get("add_bos_token")
        self.add_eos_token = cfg.get("add_eos_token")

    def __getitem__(self, key: str) -> Optional[str]:
        return self.values.get(key)


class TokenizerJSON:
    """A tokenizer.json document with the lookups the converter needs."""

    def __init__(self, doc: dict, source: str):
        if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
            raise ConversionError(f"{source}: not a Hugging Face tokenizers file (no model section)")
        self.doc = doc
        self.source = source
        model = doc["model"]
        vocab = model.get("vocab")
        if isinstance(vocab, dict):
            self.model_vocab = {str(k): int(v) for k, v in vocab.items()}
        elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
            self.model_vocab = {}
            for i, item in enumerate(vocab):
                piece = item[0] if isinstance(item, (list, tuple)) else item
                self.model_vocab.setdefault(str(piece), i)
        else:
            raise ConversionError(f"{source}: model section without a vocabulary")
        self.model_size = len(vocab)
        added = doc.get("added_tokens") or []
        if not isinstance(added, list):
            raise ConversionError(f"{source}: added_tokens is not a list")
        self.added: Dict[int, dict] = {}
        for t in added:
            if not isinstance(t, dict) or not isinstance(t.get("id"), int) or not isinstance(t.get("content"), str):
                raise ConversionError(f"{source}: malformed added_tokens entry {t!r}")
            self.added[t["id"]] = dict(t)

    def token_to_id(self, content: str) -> Optional[int]:
        for i, t in self.added.items():
            if t["content"] == content:
                return i
        return self.model_vocab.get(content)

    def __len__(self) -> int:
        contents = {t["content"] for t in self.added.values()}
        return self.model_size + len(contents - set(self.model_vocab))

    def add_special_tokens(self, contents: List[str]) -> List[int]:
        """tokenizers' AddedVocabulary.add_tokens with AddedToken(special=True,
        normalized=False): existing contents keep their id (flags updated), new ones get
        the next id after max(added ids) if that is >= the model size, else the model size."""
        ids = list(self.added)
        next_id = self.model_size if not ids else (
            max(ids) + 1 if max(ids) >= self.model_size or self.model_size == 0 else self.model_size)
        out = []
        for c in contents:
            tid = self.token_to_id(c)
            if tid is None:
                tid = next_id
                next_id += 1
            self.added[tid] = {"id": tid, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
                               "normalized": False, "special": True}
            out.append(tid)
        return out

    def to_doc(self) -> dict:
        doc = dict(self.doc)
        doc["added_tokens"] = [self.added[i] for i in sorted(self.added)]
        return doc

    def prepended_special(self) -> Optional[int]:
        """The id the post-processor puts before a single sequence (BOS), if any."""
        return _prepended(self.doc.get("post_processor"), self)


def _prepended(pp, tj: "TokenizerJSON") -> Optional[int]:
    if not isinstance(pp, dict):
        return None
    kind = pp.get("type")
    if kind == "Sequence":
        for p in pp.get("processors") or []:
            r = _prepended(p, tj)
            if r is not None:
                return r
        return None
    if kind == "TemplateProcessing":
        single = pp.get("single") or []
        if single and isinstance(single[0], dict) and "SpecialToken" in single[0]:
            name = single[0]["SpecialToken"].get("id")
            spec = (pp.get("special_tokens") or {}).get(name) or {}
            ids = spec.get("ids") or []
            return int(ids[0]) if ids else tj.token_to_id(name)
        return None
    if kind in ("RobertaProcessing", "BertProcessing"):
        cls = pp.get("cls")
        if isinstance(cls, list) and len(cls) == 2:
            return int(cls[1])
    return None


def _llama_post_processor(bos: Optional[str], bos_id: Optional[int], eos: Optional[str], eos_id: Optional[int],
                          add_bos: bool, add_eos: bool) -> Optional[dict]:
    """transformers' LlamaTokenizerFast.update_post_processor as a tokenizer.json section."""
    if not add_bos and not add_eos:
        return None
    single, pair, special = [], [], {}
    if add_bos:
        single.append({"SpecialToken": {"id": bos, "type_id": 0}})
        special[bos] = {"id": bos, "ids": [bos_id], "tokens": [bos]}
    single.append({"Sequence": {"id": "A", "type_id": 0}})
    if add_eos:
        single.append({"SpecialToken": {"id": eos, "type_id": 0}})
        special[eos] = {"id": eos, "ids": [eos_id], "tokens": [eos]}
    pair = list(single)
    if add_bos:
        pair.append({"SpecialToken": {"id": bos, "type_id": 1}})
    pair.append({"Sequence": {"id": "B", "type_id": 1}})
    if add_eos:
        pair.append({"SpecialToken": {"id": eos, "type_id": 1}})
    return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special}


def convert_sentencepiece(model_path: Path, special: SpecialTokens) -> dict:
    """tokenizer.json for a LLaMA SentencePiece tokenizer.model, as transformers' fast
    LlamaTokenizer converted it in 2023 (LlamaConverter, legacy=True); see sentencepiece_model."""
    from .sentencepiece_model import llama_tokenizer_json

    bos = special["bos_token"] or "<s>"  # some 2023 conversions have "" here
    eos = special["eos_token"] or "</s>"
    add_bos = True if special.add_bos_token is None else bool(special.add_bos_token)
    return llama_tokenizer_json(model_path, bos=bos, eos=eos, add_bos=add_bos, add_eos=bool(special.add_eos_token))


def load_base(lm_dir: Path, family: str, override: Optional[Path]) -> Tuple[TokenizerJSON, SpecialTokens, str]:
    """The LM's tokenizer before OpenFlamingo's additions: (tokenizer, special tokens, source)."""
    if override is not None:
        path = Path(override)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"--tokenizer {path}: cannot read a tokenizer.json ({e})") from None
        return TokenizerJSON(doc, str(path)), SpecialTokens(lm_dir, doc), str(path)
    tj_path = lm_dir / "tokenizer.json"
    if tj_path.is_file():
        try:
            doc = json.loads(tj_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"{tj_path}: not valid JSON ({e})") from None
        return TokenizerJSON(doc, str(tj_path)), SpecialTokens(lm_dir, doc), str(tj_path)
    sp = lm_dir / "tokenizer.model"
    if sp.is_file():
        if family != "llama":
            raise ConversionError(f"--lm {lm_dir}: only a SentencePiece tokenizer.model, which is converted for LLaMA only; "
                                  f"pass --tokenizer with a tokenizer.json")
        special = SpecialTokens(lm_dir, None)
        doc = convert_sentencepiece(sp, special)
        src = f"{sp} (converted like transformers' 2023 LlamaConverter, legacy=True)"
        return TokenizerJSON(doc, src), special, src
    raise ConversionError(f"--lm {lm_dir}: no tokenizer.json or tokenizer.model (pass --tokenizer)")


def add_openflamingo_tokens(tok: TokenizerJSON, special: SpecialTokens) -> Dict[str, Optional[int]]:
    """factory.py's additions; returns the ids of the format's `tokens` section and V."""
    had_pad = special["pad_token"] is not None
    eoc, media = tok.add_special_tokens(OPENFLAMINGO_TOKENS)
    if had_pad:
        pad = tok.token_to_id(special["pad_token"])
        if pad is None:
            raise ConversionError(f"{tok.source}: the pad token {special['pad_token']!r} "
                                  f"({special.sources.get('pad_token')}) is not in the vocabulary")
    else:
        (pad,) = tok.add_special_tokens([PAD_TOKEN])
    eos_c = special["eos_token"]
    eos = tok.token_to_id(eos_c) if eos_c is not None else None
    return {"image": media, "endofchunk": eoc, "pad": pad, "bos": tok.prepended_special(), "eos": eos,
            "vocab": len(tok), "pad_added": not had_pad}

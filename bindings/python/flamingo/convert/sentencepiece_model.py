"""A LLaMA SentencePiece `tokenizer.model` -> tokenizer.json, without sentencepiece,
protobuf, tokenizers or transformers.

The result is what transformers' fast LlamaTokenizer produced from such a file in 2023
(transformers 4.28-4.3x ``LlamaConverter`` with ``legacy=True``, the behaviour
OpenFlamingo v1 was built with; transformers 5's converter is different and, for BPE
models, no longer runs):

* model: BPE over the SentencePiece pieces (ids = piece ids; the first three renamed
  <unk>, <s>, </s> with score 0), ``byte_fallback``, ``fuse_unk``, unk ``<unk>``; merges from
  ``SentencePieceExtractor.extract(vocab_scores)``: every split of a piece into two pieces
  of the vocabulary, ordered by the piece's score (descending, stable), splits of one piece
  by (id of left, id of right);
* normalizer: Sequence[Prepend("▁"), Replace(" ", "▁")]; no pre-tokenizer;
* decoder: Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)];
* added tokens <unk>, <s>, </s> (special, normalized, as AddedToken defaults gave them);
* post-processor: TemplateProcessing "<s> $A" (LlamaTokenizerFast.update_post_processor
  with add_bos_token true, add_eos_token false unless the tokenizer config says otherwise).

The .model file is a serialized protobuf ``ModelProto`` (sentencepiece_model.proto):
pieces = field 1 (piece 1: string, score 2: float, type 3: enum NORMAL=1 UNKNOWN=2
CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6), trainer_spec = field 2 (model_type 3:
UNIGRAM=1 BPE=2, byte_fallback 35, unk_id 40, bos_id 41, eos_id 42, pad_id 43,
unk_piece 45, bos_piece 46, eos_piece 47), normalizer_spec = field 3 (name 1,
add_dummy_prefix 3, remove_extra_whitespaces 4, escape_whitespaces 5).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from .errors import ConversionError, CorruptFileError


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CorruptFileError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise CorruptFileError("varint too long")


def _fields(buf: bytes) -> Iterator[Tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message: ints for varint/fixed,
    bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise CorruptFileError("truncated fixed64")
            val = buf[pos:pos + 8]
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise CorruptFileError("truncated length-delimited field")
            val = buf[pos:pos + n]
            pos += n
        elif wire == 5:
            if pos + 4 > len(buf):
                raise CorruptFileError("truncated fixed32")
            val = buf[pos:pos + 4]
            pos += 4
        else:
            raise CorruptFileError(f"unsupported protobuf wire type {wire}")
        yield field, wire, val


class Piece:
    __slots__ = ("piece", "score", "type")

    def __init__(self, piece: str, score: float, type_: int):
        self.piece, self.score, self.type = piece, score, type_


class SentencePieceModel:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise ConversionError(f"{path}: {e.strerror or e}") from None
        self.pieces: List[Piece] = []
        self.trainer: Dict[int, object] = {}
        self.normalizer: Dict[int, object] = {}
        try:
            for field, wire, val in _fields(data):
                if field == 1 and wire == 2:
                    self.pieces.append(self._piece(val))
                elif field == 2 and wire == 2:
                    self.trainer = {f: v for f, _, v in _fields(val)}
                elif field == 3 and wire == 2:
                    self.normalizer = {f: v for f, _, v in _fields(val)}
        except CorruptFileError as e:
            raise CorruptFileError(f"{path}: not a SentencePiece model ({e})") from None
        except UnicodeDecodeError:
            raise CorruptFileError(f"{path}: not a SentencePiece model (a piece is not UTF-8)") from None
        if not self.pieces:
            raise CorruptFileError(f"{path}: not a SentencePiece model (no pieces)")

    @staticmethod
    def _piece(buf: bytes) -> Piece:
        piece, score, type_ = "", 0.0, 1
        for f, wire, v in _fields(buf):
            if f == 1 and wire == 2:
                piece = v.decode("utf-8")
            elif f == 2 and wire == 5:
                (score,) = struct.unpack("<f", v)
            elif f == 3 and wire == 0:
                type_ = v
        return Piece(piece, score, type_)

    def _bool(self, spec: Dict[int, object], field: int, default: bool) -> bool:
        v = spec.get(field)
        return default if v is None else bool(v)

    @property
    def model_type(self) -> int:
        return int(self.trainer.get(3, 1))  # UNIGRAM by default

    @property
    def byte_fallback(self) -> bool:
        return self._bool(self.trainer, 35, False)

    @property
    def unk_piece(self) -> str:
        v = self.trainer.get(45)
        return v.decode("utf-8") if isinstance(v, bytes) else "<unk>"

    @property
    def add_dummy_prefix(self) -> bool:
        return self._bool(self.normalizer, 3, True)

    @property
    def remove_extra_whitespaces(self) -> bool:
        return self._bool(self.normalizer, 4, True)

    @property
    def normalizer_name(self) -> str:
        v = self.normalizer.get(1)
        return v.decode("utf-8") if isinstance(v, bytes) else ""

    @property
    def has_precompiled_charsmap(self) -> bool:
        v = self.normalizer.get(2)
        return isinstance(v, bytes) and len(v) > 0


def _merges(vocab: Dict[str, int], vocab_scores: List[Tuple[str, float]]) -> List[Tuple[str, str]]:
    """transformers SentencePieceExtractor.extract(vocab_scores) (4.28 - 4.4x)."""
    merges = []
    for piece, score in dict(vocab_scores).items():
        local = []
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2], reverse=True)
    return [(l, r) for l, r, _ in merges]


def llama_tokenizer_json(path: Path, bos: str = "<s>", eos: str = "</s>", add_bos: bool = True,
                         add_eos: bool = False) -> dict:
    """tokenizer.json (as a dict) for a LLaMA-style SentencePiece BPE model (see the module doc)."""
    m = SentencePieceModel(path)
    if m.model_type != 2:
        raise ConversionError(f"{path}: a SentencePiece {'Unigram' if m.model_type == 1 else 'non-BPE'} model; only "
                              f"LLaMA-style BPE models are converted (pass --tokenizer with a tokenizer.json)")
    if m.has_precompiled_charsmap or m.remove_extra_whitespaces or not m.add_dummy_prefix:
        raise ConversionError(
            f"{path}: SentencePiece normaliser settings differ from LLaMA's (identity rules, add_dummy_prefix, no "
            f"whitespace removal): name {m.normalizer_name!r}, add_dummy_prefix {m.add_dummy_prefix}, "
            f"remove_extra_whitespaces {m.remove_extra_whitespaces}; pass --tokenizer with a tokenizer.json"
        )
    if len(m.pieces) < 3:
        raise ConversionError(f"{path}: fewer than 3 pieces")
    # LlamaConverter.vocab: ids 0..2 renamed via the slow tokenizer (its unk/bos/eos pieces), score 0
    vocab_scores = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)] + [(p.piece, p.score) for p in m.pieces[3:]]
    sp_vocab = {p.piece: i for i, p in enumerate(m.pieces)}
    bpe_vocab = {}
    for i, (piece, _) in enumerate(vocab_scores):
        bpe_vocab.setdefault(piece, i)
    if len(bpe_vocab) != len(vocab_scores):
        raise CorruptFileError(f"{path}: duplicate pieces")
    merges = _merges(sp_vocab, vocab_scores)
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": True,
              "special": True} for i, c in enumerate(("<unk>", "<s>", "</s>"))]
    from .tokenizer import _llama_post_processor

    ids = {c: i for i, c in enumerate(("<unk>", "<s>", "</s>"))}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ]},
        "pre_tokenizer": None,
        "post_processor": _llama_post_processor(bos, ids.get(bos), eos, ids.get(eos), add_bos, add_eos),
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": m.byte_fallback,
                  "ignore_merges": False, "vocab": bpe_vocab, "merges": [[l, r] for l, r in merges]},
    }

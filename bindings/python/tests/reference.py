"""A tiny safetensors reader (standard library only) for the fixtures'
reference.safetensors: 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets}}, then the data."""

import json
import struct
import sys
from array import array
from pathlib import Path
from typing import Dict, List

_CODES = {"F32": "f", "F64": "d", "I64": "q", "I32": "i", "U8": "B", "I8": "b"}


class Tensor:
    def __init__(self, dtype: str, shape: List[int], data: array):
        self.dtype, self.shape, self.data = dtype, shape, data

    def __len__(self) -> int:
        return len(self.data)

    def row(self, i: int) -> array:
        """Row i along the last axis."""
        n = self.shape[-1]
        return self.data[i * n:(i + 1) * n]


def read(path: Path) -> Dict[str, Tensor]:
    raw = Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] not in _CODES:
            continue
        begin, end = t["data_offsets"]
        a = array(_CODES[t["dtype"]])
        a.frombytes(raw[base + begin:base + end])
        if sys.byteorder != "little":
            a.byteswap()
        count = 1
        for d in t["shape"]:
            count *= d
        assert len(a) == count, (name, len(a), t["shape"])
        out[name] = Tensor(t["dtype"], list(t["shape"]), a)
    return out


def rel_err(got, ref) -> float:
    """max|got - ref| / max|ref| (inf when the lengths differ or a value is
    not finite)."""
    if len(got) != len(ref):
        return float("inf")
    num = den = 0.0
    for a, b in zip(got, ref):
        if a != a or a in (float("inf"), float("-inf")):
            return float("inf")
        num = max(num, abs(a - b))
        den = max(den, abs(b))
    return num / den if den else num


class Reference:
    """The tensors the session tests need, from a fixture directory."""

    def __init__(self, fixture_dir: Path):
        t = read(Path(fixture_dir) / "reference.safetensors")
        px = t["input.pixels"]
        self.n_images = px.shape[1]
        self.image_size = px.shape[-1]
        self.pixels = px.data  # array('f'), [T][3][H][W]
        self.ids: List[int] = list(t["input.input_ids"].data)
        lg = t["logits"]
        self.vocab = lg.shape[-1]
        self.logits = lg.data  # array('f'), [L][V]
        rs = t["resampler.out"]
        self.latents, self.dim = rs.shape[-2], rs.shape[-1]
        self.resampler = rs.data
        self.greedy: List[int] = list(t["greedy.ids"].data)
        # Present only in newer fixtures: {name: token ids}.
        self.optional: Dict[str, List[int]] = {}
        for key in ("beam3_lp0.ids", "beam3_lp1.ids", "greedy_nr2.ids", "greedy_rp15.ids", "stop.input_ids",
                    "stop.greedy.ids", "stop.beam3_lp0.ids", "stop.beam3_lp1.ids"):
            if key in t:
                self.optional[key] = list(t[key].data)

    def logits_row(self, i: int) -> array:
        return self.logits[i * self.vocab:(i + 1) * self.vocab]

    def logits_rows(self, begin: int, end: int) -> array:
        return self.logits[begin * self.vocab:end * self.vocab]

    @property
    def image_floats(self) -> int:
        return 3 * self.image_size * self.image_size

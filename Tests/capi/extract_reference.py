#!/usr/bin/env python3
"""Extracts the reference tensors that Tests/capi/test_session.c needs from a
fixture's reference.safetensors into raw little-endian files, so that the C
test parses no JSON:

    extract_reference.py REFERENCE.safetensors OUT_DIR

Writes into OUT_DIR:
    pixels.f32      input.pixels [1,T,1,3,H,W] as T planar images [T][3][H][W]
    input_ids.i32   input.input_ids [1,L] (int64 -> int32)
    logits.f32      logits [1,L,V]
    resampler.f32   resampler.out [1,T,latents,dim]
    greedy.i32      greedy.ids [N]
    and, when the fixture has them (int64 -> int32):
    beam3_lp0.i32, beam3_lp1.i32    beam3_lp{0,1}.ids (3 beams, length_penalty 0 / 1)
    greedy_nr2.i32, greedy_rp15.i32 greedy with no_repeat_ngram_size 2 /
                                    repetition_penalty 1.5
    stop_input_ids.i32              stop.input_ids: a prompt whose continuation
                                    stops at <|endofchunk|> (same pixels)
    stop_greedy.i32, stop_beam3_lp0.i32, stop_beam3_lp1.i32
                                    stop.{greedy,beam3_lp0,beam3_lp1}.ids
    meta.txt        "key value" lines: n_images image_size n_tokens vocab
                    latents dim, then the length of each .i32 file written
                    above under its name without ".i32"

Standard library only.
"""

import json
import os
import struct
import sys
from array import array

_FORMATS = {"F32": ("f", 4), "F64": ("d", 8), "I64": ("q", 8), "I32": ("i", 4)}


def read_safetensors(path):
    """{name: (dtype, shape, array)} for every tensor of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dtype = t["dtype"]
        if dtype not in _FORMATS:
            continue
        code, size = _FORMATS[dtype]
        begin, end = t["data_offsets"]
        a = array(code)
        a.frombytes(data[base + begin:base + end])
        if sys.byteorder != "little":
            a.byteswap()
        count = 1
        for d in t["shape"]:
            count *= d
        if len(a) != count:
            raise ValueError(f"{path}: {name}: {len(a)} values for shape {t['shape']}")
        out[name] = (dtype, list(t["shape"]), a)
    return out


def write(path, code, values):
    a = array(code, values)
    if a.itemsize != 4:
        raise ValueError(f"array('{code}') has items of {a.itemsize} bytes")
    if sys.byteorder != "little":
        a.byteswap()
    with open(path, "wb") as f:
        a.tofile(f)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    ref = read_safetensors(argv[1])
    out = argv[2]
    os.makedirs(out, exist_ok=True)
    meta = []

    _, shape, pixels = ref["input.pixels"]
    if len(shape) != 6 or shape[0] != 1 or shape[2] != 1 or shape[3] != 3 or shape[4] != shape[5]:
        raise ValueError(f"input.pixels has shape {shape}, want [1,T,1,3,H,H]")
    write(os.path.join(out, "pixels.f32"), "f", pixels)
    meta += [("n_images", shape[1]), ("image_size", shape[4])]

    _, shape, ids = ref["input.input_ids"]
    write(os.path.join(out, "input_ids.i32"), "i", ids)
    meta.append(("n_tokens", shape[-1]))

    _, shape, logits = ref["logits"]
    write(os.path.join(out, "logits.f32"), "f", logits)
    meta.append(("vocab", shape[-1]))

    _, shape, res = ref["resampler.out"]
    write(os.path.join(out, "resampler.f32"), "f", res)
    meta += [("latents", shape[-2]), ("dim", shape[-1])]

    optional = [("greedy", "greedy.ids"), ("beam3_lp0", "beam3_lp0.ids"), ("beam3_lp1", "beam3_lp1.ids"),
                ("greedy_nr2", "greedy_nr2.ids"), ("greedy_rp15", "greedy_rp15.ids"),
                ("stop_input_ids", "stop.input_ids"), ("stop_greedy", "stop.greedy.ids"),
                ("stop_beam3_lp0", "stop.beam3_lp0.ids"), ("stop_beam3_lp1", "stop.beam3_lp1.ids")]
    for name, key in optional:
        if key in ref:
            _, shape, ids = ref[key]
            write(os.path.join(out, name + ".i32"), "i", ids)
            meta.append((name, len(ids)))

    with open(os.path.join(out, "meta.txt"), "w") as f:
        for k, v in meta:
            f.write(f"{k} {v}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Extracts the reference tensors that Tests/capi/test_session.c needs from a
fixture's reference.safetensors into raw little-endian files, so that the C
test parses no JSON:

    extract_reference.py REFERENCE.safetensors OUT_DIR [IMAGES_DIR]

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
    for test_text.c, when reference.json lies beside REFERENCE.safetensors:
    prompt.txt                      its "prompt" (UTF-8, no newline added)
    greedy_text.txt, greedy_text_skip.txt
                                    greedy.text / greedy.text_skip_special
                                    (Hugging Face's decode of greedy.ids)
    extra_markers_prompt.txt        extra_markers.prompt (3 markers), if any
    batch_prompt0.txt, batch_prompt1.txt, batch_pixels.f32, batch_greedy.i32
                                    the two-row batch: prompts, batch.pixels
                                    [rows][max images][3][H][W], and
                                    batch.greedy.ids [rows][steps]
    and from IMAGES_DIR/goldens.safetensors, when given (Pillow's decoded
    RGB pixels, rows top to bottom):
    rgb_37x53.rgb, exif1_40x24.rgb  "<name>.decoded" [H][W][3] as bytes
    meta.txt        "key value" lines: n_images image_size n_tokens vocab
                    latents dim, then the length of each .i32 file written
                    above under its name without ".i32"; for test_text.c
                    also e_acute_index (the index of the "<0xC3>" token
                    followed by "<0xA9>" in input_tokens, if any),
                    batch_rows, batch_max_images, batch_images0,
                    batch_images1, batch_steps, and <name>_width /
                    <name>_height for each .rgb file

Standard library only.
"""

import json
import os
import struct
import sys
from array import array

_FORMATS = {"F32": ("f", 4), "F64": ("d", 8), "I64": ("q", 8), "I32": ("i", 4), "U8": ("B", 1)}


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


def write_text(path, text):
    with open(path, "wb") as f:
        f.write(text.encode("utf-8"))


def extract_text(safetensors_path, ref, out):
    """What test_text.c needs from reference.json (and the batch tensors)."""
    path = os.path.join(os.path.dirname(os.path.abspath(safetensors_path)), "reference.json")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    meta = []
    write_text(os.path.join(out, "prompt.txt"), j["prompt"])
    write_text(os.path.join(out, "greedy_text.txt"), j["greedy"]["text"])
    write_text(os.path.join(out, "greedy_text_skip.txt"), j["greedy"]["text_skip_special"])
    tokens = j.get("input_tokens", [])
    for i in range(len(tokens) - 1):
        if tokens[i] == "<0xC3>" and tokens[i + 1] == "<0xA9>":
            meta.append(("e_acute_index", i))
            break
    if "extra_markers" in j:
        write_text(os.path.join(out, "extra_markers_prompt.txt"), j["extra_markers"]["prompt"])
    b = j.get("batch")
    if b and len(b["prompts"]) == 2 and "batch.pixels" in ref and "batch.greedy.ids" in ref:
        for i, p in enumerate(b["prompts"]):
            write_text(os.path.join(out, f"batch_prompt{i}.txt"), p)
        _, shape, px = ref["batch.pixels"]  # [rows, max images, 1, 3, H, W]
        write(os.path.join(out, "batch_pixels.f32"), "f", px)
        _, gshape, ids = ref["batch.greedy.ids"]
        write(os.path.join(out, "batch_greedy.i32"), "i", ids)
        meta += [("batch_rows", shape[0]), ("batch_max_images", shape[1]),
                 ("batch_images0", b["images_per_row"][0]), ("batch_images1", b["images_per_row"][1]),
                 ("batch_steps", gshape[1])]
    return meta


def extract_images(images_dir, out):
    path = os.path.join(images_dir, "goldens.safetensors")
    if not os.path.isfile(path):
        return []
    g = read_safetensors(path)
    meta = []
    for name in ("rgb_37x53", "exif1_40x24"):
        for ext in (".png", ".jpg"):
            key = f"{name}{ext}.decoded"
            if key in g:
                _, shape, data = g[key]
                with open(os.path.join(out, f"{name}.rgb"), "wb") as f:
                    f.write(data.tobytes())
                meta += [(f"{name}_width", shape[1]), (f"{name}_height", shape[0])]
    return meta


def main(argv):
    if len(argv) not in (3, 4):
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

    meta += extract_text(argv[1], ref, out)
    if len(argv) > 3:
        meta += extract_images(argv[3], out)

    with open(os.path.join(out, "meta.txt"), "w") as f:
        for k, v in meta:
            f.write(f"{k} {v}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

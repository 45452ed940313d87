"""python -m flamingo info [MODEL_DIR]
python -m flamingo caption MODEL_DIR IMAGE [SHOT_IMAGE=CAPTION ...]

`info` prints the library version, the devices and, given a model directory, the
model info. The text is byte-for-byte the same as bindings/c/example.c and
the Rust example (`cargo run --example info -- MODEL_DIR`) print, so the three
can be diffed. Format (one item per line, "key: value", "key:" when the value
is empty; floats with 8 decimals; -1 for absent token ids):

    flamingo 0.1.0 (abi 1)
    devices: 1
    device 0: cpu
      backend: cpu
      ...
    model: MODEL_DIR
      architecture: openflamingo
      ...

`caption` captions IMAGE (a JPEG or PNG) with OpenFlamingo's captioning
prompt, optionally few-shot (each SHOT_IMAGE=CAPTION argument, split at its
first "=", adds "<image>Output:CAPTION<|endofchunk|>" before the query), beam
search with 3 beams, length_penalty 0, at most 20 new tokens, decoded with the
streaming detokenizer (special tokens skipped) and post-processed (cut at the
first "Output", '"' removed, stripped). It prints the caption and a newline:
byte-for-byte what bindings/c/caption.c and the Rust example `caption` print.

On a failed call either prints "error: <status string>: <message>" to stderr
and exits with status 1; bad usage exits with status 2.
"""

from __future__ import annotations

import math
import sys
from typing import List, Optional

import flamingo

_BACKENDS = {0: "cpu", 1: "opencl"}
_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "accelerator", 3: "other"}

_INFO_KEYS = [
    "architecture", "vision_kind", "lm_family",
    "image_size", "patch_size", "vision_width", "vision_layers", "vision_heads", "vision_tokens",
    "resampler_depth", "resampler_heads", "resampler_dim_head", "num_latents",
    "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_seq_len", "vocab_size",
    "cross_attn_every_n_layers", "num_cross_attn_layers",
    "image_token_id", "endofchunk_token_id", "pad_token_id", "bos_token_id", "eos_token_id",
    "image_mean", "image_std", "num_parameters", "weight_bytes", "visual_dim",
]


def _float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return "%.8f" % x


def _line(indent: str, key: str, value) -> str:
    if isinstance(value, tuple):
        value = " ".join(_float(v) for v in value)
    else:
        value = str(int(value)) if not isinstance(value, str) else value
    return f"{indent}{key}:" + (f" {value}" if value else "")


def header_lines(out: List[str]) -> List[str]:
    out.append(f"flamingo {flamingo.version()} (abi {flamingo.abi_version()})")
    return out


def device_lines(out: List[str]) -> List[str]:
    n = flamingo.device_count()
    out.append(f"devices: {n}")
    for i in range(n):
        d = flamingo.device(i)
        out.append(f"device {i}: {d.name}")
        out.append(_line("  ", "backend", _BACKENDS.get(int(d.backend), str(int(d.backend)))))
        out.append(_line("  ", "type", _DEVICE_TYPES.get(int(d.type), str(int(d.type)))))
        for key in ("platform_index", "device_index", "compute_units", "memory_bytes",
                    "platform_name", "vendor", "driver_version"):
            out.append(_line("  ", key, getattr(d, key)))
    return out


def model_lines(out: List[str], path: str, info: "flamingo.ModelInfo") -> List[str]:
    out.append(f"model: {path}")
    for key in _INFO_KEYS:
        out.append(_line("  ", key, getattr(info, key)))
    return out


def _emit(lines: List[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def info(path: Optional[str]) -> int:
    out: List[str] = []
    try:
        header_lines(out)
        device_lines(out)
        if path is not None:
            with flamingo.Model.load(path) as model:
                model_lines(out, path, model.info)
    except flamingo.FlamingoError as e:
        _emit(out)  # what was printed before the failure, as C and Rust do
        sys.stderr.write(f"error: {e}\n")
        return 1
    _emit(out)
    return 0


def caption(model_dir: str, image: str, shots: List[str]) -> int:
    pairs = []
    for shot in shots:
        if "=" not in shot:
            sys.stderr.write(f"caption: a few-shot argument must be IMAGE=CAPTION, not {shot!r}\n")
            return 2
        path, text = shot.split("=", 1)
        pairs.append((path, text))
    try:
        with flamingo.Model(model_dir) as model:
            text = model.caption(image, shots=pairs)
    except flamingo.FlamingoError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    _emit([text])
    return 0


USAGE = "usage: python -m flamingo info [MODEL_DIR]\n       python -m flamingo caption MODEL_DIR IMAGE [SHOT_IMAGE=CAPTION ...]\n"


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "info" and len(args) <= 2:
        return info(args[1] if len(args) == 2 else None)
    if args and args[0] == "caption" and len(args) >= 3:
        return caption(args[1], args[2], args[3:])
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main())

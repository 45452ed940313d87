"""python -m flamingo.convert --list [--json]
python -m flamingo.convert openflamingo --vision PATH --vision-arch NAME_OR_JSON --lm DIR
    --checkpoint PATH --cross-attn-every-n-layers N --out DIR [--dtype f32|f16|bf16] [options]

Exit status: 0 on success, 1 when the inputs cannot be converted (the message names the
file and the problem), 2 on bad usage."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

import flamingo

from . import ConversionError, Options, convert
from .openflamingo import DEFAULT_SHARD_BYTES, RESAMPLER_DEFAULTS, XATTN_DEFAULTS
from .releases import COMMON, RELEASES, command, listing_text

_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


def _geometry(text: str, defaults: Dict[str, int], flag: str) -> Dict[str, int]:
    out = dict(defaults)
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or k not in defaults:
            raise argparse.ArgumentTypeError(f"{flag}: expected {','.join(f'{k}=N' for k in defaults)}, got {part!r}")
        try:
            out[k] = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}: {k} must be an integer, got {v!r}") from None
        if out[k] < 1:
            raise argparse.ArgumentTypeError(f"{flag}: {k} must be >= 1")
    return out


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 5GB, 500MB)")
    unit = (m.group(2) or "").upper().replace("I", "").rstrip("B")
    mult = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}[unit]
    return max(1, int(float(m.group(1)) * mult))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flamingo.convert",
                                description="Convert released checkpoints to the flamingo model directory format.")
    p.add_argument("--list", action="store_true", help="list the OpenFlamingo releases and the flags each needs")
    p.add_argument("--json", action="store_true", help="with --list: machine-readable output")
    sub = p.add_subparsers(dest="command")
    o = sub.add_parser("openflamingo", help="convert an OpenFlamingo model (v2 releases and v1 OpenFlamingo-9B)")
    o.add_argument("--vision", required=True, type=Path,
                   help="CLIP weights: OpenAI's TorchScript archive (ViT-L-14.pt) or an open_clip state dict "
                        "(.pt/.bin torch.save, or .safetensors; keys visual.*); or a timm NFNet state dict")
    o.add_argument("--vision-arch", required=True,
                   help="open_clip model config name (e.g. ViT-L-14) or the path of a model-config JSON; "
                        "NFNet: dm_nfnet_f0 … dm_nfnet_f6, or a JSON of config.json's vision object with kind nfnet")
    o.add_argument("--lm", required=True, type=Path, help="Hugging Face directory of the language model")
    o.add_argument("--checkpoint", required=True, type=Path, help="the release's checkpoint.pt")
    o.add_argument("--cross-attn-every-n-layers", required=True, type=int, metavar="N")
    o.add_argument("--out", required=True, type=Path, help="output model directory")
    o.add_argument("--dtype", choices=sorted(_DTYPES), help="convert floating weights (default: keep each tensor's dtype)")
    o.add_argument("--tokenizer", type=Path, help="a tokenizer.json to use instead of the one in --lm")
    o.add_argument("--vision-image-size", type=int, metavar="PIXELS",
                   help="NFNet encoders: input size (default: the variant's timm test size; the Flamingo paper: 320)")
    o.add_argument("--vision-activation", choices=["quick_gelu", "gelu"],
                   help="default quick_gelu (OpenAI CLIP weights) unless the arch config says quick_gelu: false")
    o.add_argument("--media-semantics", choices=["current", "v1"], default="current",
                   help="cross-attention masking: open_flamingo >= 2.0 (default) or the 0.1.x code (v1 parity)")
    o.add_argument("--resampler-geometry", default="",
                   help="non-release models only: " + ",".join(f"{k}={v}" for k, v in RESAMPLER_DEFAULTS.items()))
    o.add_argument("--xattn-geometry", default="",
                   help="non-release models only: " + ",".join(f"{k}={v}" for k, v in XATTN_DEFAULTS.items()))
    o.add_argument("--new-rows", choices=["zeros", "mean"], default="zeros",
                   help="values of output-head rows that the release does not contain (LLaMA v1; default zeros)")
    o.add_argument("--max-shard-size", type=_size, default=DEFAULT_SHARD_BYTES, help="per weight file (default 5GiB)")
    o.add_argument("--force", action="store_true", help="overwrite a non-empty --out directory")
    o.add_argument("--quantize", choices=["q4", "q8"],
                   help="store the matrices as 4/8-bit affine groups (libflamingo's quantizer, as `flamingo quantize`)")
    o.add_argument("--group-size", type=int, default=64, choices=[32, 64, 128], help="with --quantize (default 64)")
    o.add_argument("--keep", action="append", default=None, metavar="PATTERN=TYPE",
                   help="with --quantize: store matrices whose module path matches PATTERN as TYPE (repeatable)")
    o.add_argument("--quiet", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.list:
        if args.json:
            print(json.dumps({"common": COMMON,
                              "releases": [dict(r, command=command(r)) for r in RELEASES]}, indent=2))
        else:
            print(listing_text())
        return 0
    if args.command != "openflamingo":
        p.print_usage(sys.stderr)
        print("error: give --list or the openflamingo command", file=sys.stderr)
        return 2
    try:
        resampler = _geometry(args.resampler_geometry, RESAMPLER_DEFAULTS, "--resampler-geometry")
        xattn = _geometry(args.xattn_geometry, XATTN_DEFAULTS, "--xattn-geometry")
    except argparse.ArgumentTypeError as e:
        p.print_usage(sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2
    # With --quantize the float model is written next to --out first, then quantized into it.
    float_out = args.out.with_name(args.out.name + ".float-tmp") if args.quantize else args.out
    opts = Options(vision=args.vision, vision_arch=args.vision_arch, lm=args.lm, checkpoint=args.checkpoint,
                   cross_attn_every_n_layers=args.cross_attn_every_n_layers, out=float_out,
                   dtype=_DTYPES.get(args.dtype) if args.dtype else None, tokenizer=args.tokenizer,
                   vision_activation=args.vision_activation, media_semantics=args.media_semantics,
                   resampler=resampler, xattn=xattn, new_rows=args.new_rows, max_shard_bytes=args.max_shard_size,
                   force=args.force or args.quantize is not None, vision_image_size=args.vision_image_size)
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.quantize:
        try:  # the quantizer is libflamingo's: fail before converting if it cannot be loaded
            flamingo.version()
        except flamingo.LibraryError as e:
            print(f"error: --quantize needs libflamingo: {e}", file=sys.stderr)
            return 1
    try:
        result = convert(opts, log=log)
        if args.quantize:
            if log:
                log(f"quantizing to {args.quantize} (groups of {args.group_size}) into {args.out}")
            flamingo.quantize(float_out, args.out, type=args.quantize, group_size=args.group_size, keep=args.keep,
                              overwrite=args.force)
            result.out = args.out
            result.files = ["model.safetensors"]
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except flamingo.FlamingoError as e:
        print(f"error: quantizing: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.quantize and float_out.exists():
            shutil.rmtree(float_out, ignore_errors=True)
    if not args.quiet:
        for n in result.notes:
            print(f"note: {n}", file=sys.stderr)
        print(f"wrote {result.out} ({', '.join(result.files)}, tokenizer.json, config.json, conversion.json)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

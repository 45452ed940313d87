#!/usr/bin/env python3
"""Writes every tensor of a safetensors file as a raw little-endian file, so
that C tests parse no JSON (standard library only):

    dump_tensors.py FILE.safetensors OUT_DIR

OUT_DIR/<name>.f32 for F32 tensors, OUT_DIR/<name>.i32 for I64/I32 ones
(converted to int32), and OUT_DIR/shapes.txt with one line per tensor:
"<name> <dim> <dim> ...". A reference.json beside FILE with a "prompt"
gives OUT_DIR/prompt.txt."""
import json
import struct
import sys
from pathlib import Path


def main() -> int:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    raw = src.read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8:8 + n])
    lines = []
    for name, t in sorted(header.items()):
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        data = raw[8 + n + b:8 + n + e]
        if t["dtype"] == "F32":
            (out / f"{name}.f32").write_bytes(data)
        elif t["dtype"] in ("I64", "I32"):
            code = "q" if t["dtype"] == "I64" else "i"
            values = struct.unpack(f"<{len(data) // struct.calcsize(code)}{code}", data)
            (out / f"{name}.i32").write_bytes(struct.pack(f"<{len(values)}i", *values))
        else:
            continue
        lines.append(" ".join([name] + [str(d) for d in t["shape"]]))
    (out / "shapes.txt").write_text("\n".join(lines) + "\n")
    meta = src.parent / "reference.json"
    if meta.is_file():
        prompt = json.loads(meta.read_text(encoding="utf-8")).get("prompt")
        if prompt is not None:
            (out / "prompt.txt").write_bytes(prompt.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

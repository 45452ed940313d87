"""Checkpoint conversion: OpenFlamingo releases -> flamingo model directories.

    python -m flamingo.convert --list
    python -m flamingo.convert openflamingo --vision ViT-L-14.pt --vision-arch ViT-L-14 \\
        --lm mpt-1b-redpajama-200b/ --checkpoint checkpoint.pt --cross-attn-every-n-layers 1 --out OF-3B/

Needs numpy only (``pip install flamingo[convert]``); PyTorch files are read without
torch (a restricted unpickler that accepts tensor data only). See docs/converting.md.
"""

from __future__ import annotations

try:
    import numpy  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise ImportError("flamingo.convert needs numpy (pip install 'flamingo[convert]' or pip install numpy)") from e

from .errors import ConversionError, CorruptFileError, UnsafeFileError
from .openflamingo import Options, Result, convert
from .releases import RELEASES

__all__ = ["ConversionError", "CorruptFileError", "UnsafeFileError", "Options", "Result", "convert", "RELEASES",
           "convert_openflamingo"]


def convert_openflamingo(vision, vision_arch, lm, checkpoint, cross_attn_every_n_layers, out, dtype=None, **kw) -> Result:
    """Converts one OpenFlamingo model; keyword arguments as `Options` (dtype: None/'f32'/'f16'/'bf16')."""
    from pathlib import Path

    dt = {None: None, "f32": "F32", "f16": "F16", "bf16": "BF16", "F32": "F32", "F16": "F16", "BF16": "BF16"}[dtype]
    opts = Options(vision=Path(vision), vision_arch=str(vision_arch), lm=Path(lm), checkpoint=Path(checkpoint),
                   cross_attn_every_n_layers=int(cross_attn_every_n_layers), out=Path(out), dtype=dt, **kw)
    return convert(opts)

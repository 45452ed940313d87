#!/usr/bin/env bash
# Trains flamingo-mini end to end on the CPU and converts it into models/flamingo-mini
# (about 25 minutes on 2 cores; everything seeded). Intermediate files: tools/train/work/.
#   PYTHON=/path/to/python bash tools/train/train.sh
# The Python environment needs torch, transformers 5, open_clip_torch 2.20, open_flamingo 2.0.1,
# tokenizers, safetensors, pillow, numpy (tools/reference/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-/work/refenv/bin/python}
mkdir -p work
rm -f work/timings.json
start=$(date +%s)
"$PY" data.py            # held-out evaluation data + demo images -> models/flamingo-mini/{eval,examples}
"$PY" pretrain_lm.py     # tokenizer + LLaMA-style LM  -> work/lm
"$PY" pretrain_vision.py # image bank + ViT classifier -> work/vision.pt, work/vision_arch.json, work/bank.npz
"$PY" train_flamingo.py  # perceiver + gated xattn + <image>/<|endofchunk|> rows -> work/checkpoint.pt
"$PY" export.py          # python -m flamingo.convert openflamingo ... -> models/flamingo-mini
echo "train.sh: $(( ($(date +%s) - start) / 60 )) min"

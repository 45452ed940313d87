"""The released OpenFlamingo models and where each conversion input comes from (spec/50 §1)."""

from __future__ import annotations

from typing import Dict, List

OPENAI_VIT_L_14 = ("https://openaipublic.azureedge.net/clip/models/"
                   "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt")

RELEASES: List[Dict] = [
    {
        "name": "OpenFlamingo-3B-vitl-mpt1b",
        "checkpoint": "https://huggingface.co/openflamingo/OpenFlamingo-3B-vitl-mpt1b (checkpoint.pt)",
        "lm": "anas-awadalla/mpt-1b-redpajama-200b",
        "lm_family": "mosaic_gpt (MosaicGPT, mosaicml/examples v0.0.4 code)",
        "cross_attn_every_n_layers": 1,
        "extra_flags": [],
    },
    {
        "name": "OpenFlamingo-3B-vitl-mpt1b-langinstruct",
        "checkpoint": "https://huggingface.co/openflamingo/OpenFlamingo-3B-vitl-mpt1b-langinstruct (checkpoint.pt)",
        "lm": "anas-awadalla/mpt-1b-redpajama-200b-dolly",
        "lm_family": "mosaic_gpt (MosaicGPT, mosaicml/examples v0.0.4 code)",
        "cross_attn_every_n_layers": 1,
        "extra_flags": [],
    },
    {
        "name": "OpenFlamingo-4B-vitl-rpj3b",
        "checkpoint": "https://huggingface.co/openflamingo/OpenFlamingo-4B-vitl-rpj3b (checkpoint.pt)",
        "lm": "togethercomputer/RedPajama-INCITE-Base-3B-v1",
        "lm_family": "gpt_neox",
        "cross_attn_every_n_layers": 2,
        "extra_flags": [],
    },
    {
        "name": "OpenFlamingo-4B-vitl-rpj3b-langinstruct",
        "checkpoint": "https://huggingface.co/openflamingo/OpenFlamingo-4B-vitl-rpj3b-langinstruct (checkpoint.pt)",
        "lm": "togethercomputer/RedPajama-INCITE-Instruct-3B-v1",
        "lm_family": "gpt_neox",
        "cross_attn_every_n_layers": 2,
        "extra_flags": [],
    },
    {
        "name": "OpenFlamingo-9B-vitl-mpt7b",
        "checkpoint": "https://huggingface.co/openflamingo/OpenFlamingo-9B-vitl-mpt7b (checkpoint.pt)",
        "lm": "anas-awadalla/mpt-7b (MPT-7B; the model card pins code revision 68e1a8e0ebb9b30f3c45c1ef6195980f29063ae2)",
        "lm_family": "mpt (llm-foundry MPT)",
        "cross_attn_every_n_layers": 4,
        "extra_flags": [],
    },
    {
        "name": "OpenFlamingo-9B-deprecated",
        "checkpoint": "https://huggingface.co/openflamingo/OpenFlamingo-9B-deprecated (checkpoint.pt; OpenFlamingo v1)",
        "lm": "a LLaMA-7B checkpoint in Hugging Face format (not distributed with OpenFlamingo; which conversion v1 "
              "used is not recorded)",
        "lm_family": "llama",
        "cross_attn_every_n_layers": 4,
        "extra_flags": [],
        "optional_flags": ["--media-semantics v1   (reproduce the OpenFlamingo 0.1.x code's cross-attention masking; "
                           "the default 'current' is what open_flamingo >= 2.0 does with this checkpoint)"],
        "remarks": "the output rows of the 3 added tokens are not in checkpoint.pt (written as zeros, --new-rows; "
                   "see docs/converting.md); a directory with only a SentencePiece tokenizer.model is converted "
                   "like transformers' 2023 fast LlamaTokenizer (legacy)",
    },
]

COMMON = {
    "vision": f"OpenAI CLIP ViT-L/14 TorchScript archive ViT-L-14.pt: {OPENAI_VIT_L_14} "
              f"(what open_clip downloads for create_model_and_transforms('ViT-L-14', pretrained='openai'))",
    "vision_arch": "ViT-L-14",
}


def command(r: Dict) -> str:
    lm_dir = r["lm"].split(" ")[0].split("/")[-1] if "/" in r["lm"].split(" ")[0] else "llama-7b-hf"
    lines = [
        "python -m flamingo.convert openflamingo",
        "    --vision ViT-L-14.pt --vision-arch ViT-L-14",
        f"    --lm {lm_dir}/",
        f"    --checkpoint {r['name']}/checkpoint.pt",
        f"    --cross-attn-every-n-layers {r['cross_attn_every_n_layers']}",
    ] + [f"    {f}" for f in r["extra_flags"]] + [f"    --out {r['name']}-flamingo/"]
    return " \\\n".join(lines)


def listing_text() -> str:
    out = [
        "OpenFlamingo releases (convert with: python -m flamingo.convert openflamingo ...)",
        "",
        f"All of them: --vision  {COMMON['vision']}",
        f"             --vision-arch {COMMON['vision_arch']}",
        "             --lm      a local Hugging Face model directory (e.g. `huggingface-cli download <id> --local-dir <dir>`)",
        "             --checkpoint  checkpoint.pt of the release's Hugging Face repository",
        "",
    ]
    for r in RELEASES:
        out.append(r["name"])
        out.append(f"  checkpoint: {r['checkpoint']}")
        out.append(f"  lm:         {r['lm']}  [{r['lm_family']}]")
        out.append(f"  flags:      --vision-arch ViT-L-14 --cross-attn-every-n-layers {r['cross_attn_every_n_layers']}"
                   + "".join(" " + f for f in r["extra_flags"]))
        for f in r.get("optional_flags", []):
            out.append(f"  optional:   {f}")
        if r.get("remarks"):
            out.append(f"  note:       {r['remarks']}")
        out.append("  command:")
        out.extend("    " + line for line in command(r).split("\n"))
        out.append("")
    return "\n".join(out)

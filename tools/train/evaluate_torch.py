"""Few-shot evaluation of the trained flamingo-mini PyTorch model (the open_flamingo 2.0.1
Flamingo instance, fp32, no autocast) on the held-out data in models/flamingo-mini/eval/,
done like OpenFlamingo's evaluation (open_flamingo/eval/evaluate.py; spec/70):

* prompts: captioning `<image>Output:{caption}<|endofchunk|>`, VQA / naming task
  `<image>Question:{q} Short answer:{a}<|endofchunk|>`, demonstrations each followed by "\\n"
  then the query without answer; classification `<image>Output:{class}<|endofchunk|>`
  demonstrations concatenated without newline, query `<image>Output:`.  Demonstration text:
  the image's first caption (annotation file order) .strip(), answers[0], the class name.
* zero-shot = 2 demonstrations whose text is kept with every "<image>" removed; only the
  query image is passed.
* demonstrations (captioning, VQA, classification): the SplitMix64 partial Fisher-Yates
  sampler below (shared with the Swift harness, Sources/FlamingoCore/Eval/DemoSampling.swift)
  over the train file's examples in file order; the naming task uses each test question's
  fixed "demonstrations" (first k).
* generation: Flamingo.generate(num_beams=3, length_penalty=0.0, min_new_tokens=0,
  max_new_tokens=20 captioning / 5 VQA and naming, eos = <|endofchunk|>, no sampling), batch
  size 1 (no padding); new tokens decoded with skip_special_tokens=True; post-processing:
  captions cut at the first "Output" and '"' removed; VQA cut at the first of
  Question/Answer/Short, then at the first ", " (then .strip() - the VQA metric strips too).
* rank classification: mean log-probability of each class name's tokens appended directly
  after the context (normalize_length=True); the top-1 class.  Computed with one full forward
  of context + class tokens per class, which is the same computation as OpenFlamingo's
  cached-media loop (the class tokens follow the last image either way).
* metrics: CIDEr-D x100 (pycocoevalcap's CiderScorer: n=4, sigma=6, document frequencies from
  the test references, clipped tf-idf, Gaussian length penalty, x10, mean over images) with a
  simple tokenisation (lower case, punctuation characters removed, split on whitespace)
  instead of the Java PTB tokenizer - identical for these synthetic captions; VQA accuracy x100
  with the official normalisation as in open_flamingo/eval/vqa_metric.py (punctuation, digit
  words, articles, contractions; min(1, matches among the other 9 answers / 3) averaged over
  the 10 answers); top-1 accuracy x100.

Usage (from the repository root):
  /work/refenv/bin/python tools/train/evaluate_torch.py [--model models/flamingo-mini]
      [--from-work] [--shots 0,4,8,16,32] [--tasks captioning,vqa,words,classification]
      [--limit N] [--out models/flamingo-mini/scores_torch.json]
By default the PyTorch model is built from the converted model directory (config.json,
model.safetensors, tokenizer.json - F32, so bit-identical to the training outputs);
--from-work builds it from tools/train/work (lm/, vision.pt, checkpoint.pt) like
OpenFlamingo's EvalModel (create the model, load_state_dict(checkpoint, strict=False)).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import MODEL_DIR, WORK, pixels_from_uint8  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import model as model_mod  # noqa: E402

SEED = 42
NUM_BEAMS = 3
LENGTH_PENALTY = 0.0
MAX_NEW = {"captioning": 20, "vqa": 5, "words": 5}
MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# demonstration sampling (bit-identical to the Swift harness)
# ---------------------------------------------------------------------------------------------


class SplitMix64:
    def __init__(self, state: int):
        self.state = state & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


def random_demo_indices(n: int, k: int, seed: int, query: int):
    if k > n:
        raise ValueError(f"{k} demonstrations from a pool of {n}")
    rng = SplitMix64(seed * 1000003 + query)
    idx = list(range(n))
    for j in range(k):
        r = j + rng.next() % (n - j)
        idx[j], idx[r] = idx[r], idx[j]
    return idx[:k]


# ---------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------


def load_captions(path: Path):
    d = json.loads(path.read_text())
    refs = defaultdict(list)
    for a in d["annotations"]:
        refs[a["image_id"]].append(a["caption"])
    return [{"id": im["id"], "image": path.parent / im["file_name"], "target": refs[im["id"]][0],
             "references": refs[im["id"]]} for im in d["images"] if refs.get(im["id"])]


def load_vqa(qpath: Path, apath: Path):
    q = json.loads(qpath.read_text())
    a = {x["question_id"]: x for x in json.loads(apath.read_text())["annotations"]}
    files = {im["id"]: im["file_name"] for im in q.get("images", [])}
    out = []
    for x in q["questions"]:
        ann = a[x["question_id"]]
        out.append({"id": x["question_id"], "image": qpath.parent / files[x["image_id"]], "question": x["question"],
                    "target": ann["answers"][0]["answer"], "answers": [y["answer"] for y in ann["answers"]],
                    "question_type": ann.get("question_type", ""),
                    "demonstrations": x.get("demonstrations")})
    return out


def load_classification(path: Path):
    d = json.loads(path.read_text())
    return d["classes"], [{"id": im["id"], "image": path.parent / im["file_name"], "label": im["label"],
                           "target": d["classes"][im["label"]]} for im in d["images"]]


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


def caption_tokens(s: str):
    s = s.lower()
    s = re.sub(r"[^\w\s]", " ", s)
    return s.split()


def _precook(words, n=4):
    counts = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def cider_d(predictions: dict, references: dict, n=4, sigma=6.0):
    """pycocoevalcap cider_scorer.CiderScorer.compute_score (CIDEr-D): returns (mean, per image)."""
    ids = list(predictions)
    crefs = [[_precook(caption_tokens(r), n) for r in references[i]] for i in ids]
    ctest = [_precook(caption_tokens(predictions[i]), n) for i in ids]
    df = defaultdict(float)
    for refs in crefs:
        for ng in set(ng for ref in refs for ng in ref):
            df[ng] += 1
    ref_len = np.log(float(len(crefs)))

    def counts2vec(cnts):
        vec = [defaultdict(float) for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for ng, tf in cnts.items():
            d = np.log(max(1.0, df[ng]))
            k = len(ng) - 1
            vec[k][ng] = float(tf) * (ref_len - d)
            norm[k] += vec[k][ng] ** 2
            if k == 1:
                length += tf
        return vec, [np.sqrt(x) for x in norm], length

    def sim(vh, vr, nh, nr, lh, lr):
        delta = float(lh - lr)
        val = np.zeros(n)
        for k in range(n):
            for ng in vh[k]:
                val[k] += min(vh[k][ng], vr[k][ng]) * vr[k][ng]
            if nh[k] != 0 and nr[k] != 0:
                val[k] /= nh[k] * nr[k]
            val[k] *= np.e ** (-(delta ** 2) / (2 * sigma ** 2))
        return val

    scores = []
    for test, refs in zip(ctest, crefs):
        vec, norm, length = counts2vec(test)
        score = np.zeros(n)
        for ref in refs:
            vr, nr, lr = counts2vec(ref)
            score += sim(vec, vr, norm, nr, length, lr)
        scores.append(float(np.mean(score) / len(refs) * 10.0))
    return float(np.mean(scores)), dict(zip(ids, scores))


class VQANorm:
    """The answer normalisation of open_flamingo/eval/vqa_metric.py VQAEval (official VQAv2)."""

    contractions = {"aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
                    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
                    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
                    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
                    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
                    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
                    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
                    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
                    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
                    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
                    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
                    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
                    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
                    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
                    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
                    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
                    "somethingd": "something'd", "somethingd've": "something'd've",
                    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
                    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
                    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
                    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
                    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
                    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
                    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
                    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
                    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
                    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
                    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
                    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
                    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
                    "youll": "you'll", "youre": "you're", "youve": "you've"}
    manual = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
              "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
    articles = ["a", "an", "the"]
    period_strip = re.compile(r"(?!<=\d)(\.)(?!\d)")
    comma_strip = re.compile(r"(\d)(\,)(\d)")
    punct = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]

    def punctuation(self, s):
        out = s
        for p in self.punct:
            if (p + " " in s or " " + p in s) or (re.search(self.comma_strip, s) is not None):
                out = out.replace(p, "")
            else:
                out = out.replace(p, " ")
        return self.period_strip.sub("", out, re.UNICODE)  # (sic: re.UNICODE lands in `count`, as upstream)

    def digit_article(self, s):
        words = []
        for w in s.lower().split():
            w = self.manual.setdefault(w, w)
            if w not in self.articles:
                words.append(w)
        return " ".join(self.contractions.get(w, w) for w in words)

    def __call__(self, s):
        s = s.replace("\n", " ").replace("\t", " ").strip()
        return self.digit_article(self.punctuation(s))


_norm = VQANorm()


def vqa_accuracy(pred: str, answers):
    p = _norm(pred)
    gts = [_norm(a) for a in answers]
    accs = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1:]
        accs.append(min(1.0, sum(1 for a in others if a == p) / 3.0))
    return sum(accs) / len(accs)


# ---------------------------------------------------------------------------------------------
# prompts and post-processing
# ---------------------------------------------------------------------------------------------


def caption_prompt(caption=None):
    return f"<image>Output:{caption if caption is not None else ''}{'<|endofchunk|>' if caption is not None else ''}"


def vqa_prompt(question, answer=None):
    return (f"<image>Question:{question} Short answer:{answer if answer is not None else ''}"
            f"{'<|endofchunk|>' if answer is not None else ''}")


def postprocess_caption(s):
    return s.split("Output", 1)[0].replace('"', "")


def postprocess_vqa(s):
    s = re.split("Question|Answer|Short", s, maxsplit=1)[0]
    return re.split(", ", s, maxsplit=1)[0]


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------


class CachedVisual(torch.nn.Module):
    """Wraps the open_clip VisionTransformer: each distinct image is encoded once, alone
    (batch of 1), and its patch tokens reused - the forward stays the real module's."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual
        self.cache = {}

    def forward(self, x):
        outs = []
        for img in x:
            key = hashlib.sha1(img.contiguous().numpy().tobytes()).hexdigest()
            if key not in self.cache:
                self.cache[key] = self.visual(img[None])[1][0]
            outs.append(self.cache[key])
        return None, torch.stack(outs)


class Evaluator:
    def __init__(self, model, tok):
        self.model = model
        self.tok = tok
        self.model.vision_encoder = CachedVisual(model.vision_encoder)
        self.pixels_cache = {}

    def pixels(self, path):
        path = str(path)
        if path not in self.pixels_cache:
            im = np.asarray(Image.open(path).convert("RGB"))
            assert im.shape == (common.IMAGE_SIZE, common.IMAGE_SIZE, 3), (path, im.shape)
            # open_clip transform: Resize(64, bicubic) + CenterCrop(64) are the identity for a 64x64 image
            self.pixels_cache[path] = pixels_from_uint8(im[None])[0]
        return self.pixels_cache[path]

    def vision_x(self, paths):
        return torch.stack([self.pixels(p) for p in paths])[None, :, None]  # [1, T, 1, 3, H, W]

    @torch.no_grad()
    def generate(self, text, paths, max_new_tokens):
        enc = self.tok([text], return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        out = self.model.generate(vision_x=self.vision_x(paths), lang_x=ids, attention_mask=mask,
                                  min_new_tokens=0, max_new_tokens=max_new_tokens, num_beams=NUM_BEAMS,
                                  length_penalty=LENGTH_PENALTY, do_sample=False)
        return self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    @torch.no_grad()
    def rank(self, context, paths, class_names):
        scores = []
        vx = self.vision_x(paths)
        ctx = self.tok(context, add_special_tokens=True)["input_ids"]
        for name in class_names:
            cls = self.tok(name, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + cls])
            logits = self.model(vision_x=vx, lang_x=ids, attention_mask=torch.ones_like(ids)).logits[0]
            logp = torch.log_softmax(logits.float(), dim=-1)
            lp = [logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cls)]
            scores.append(sum(lp) / len(lp))
        return scores


def run_generation_task(ev, task, train, test, shots, limit, log):
    """captioning / vqa / words: returns {shots: {score, predictions}}."""
    results = {}
    for k in shots:
        eff = k if k > 0 else 2
        preds, accs = {}, {}
        t0 = time.time()
        pool_index = {x["id"]: i for i, x in enumerate(train)}
        for q, ex in enumerate(test[:limit]):
            if task == "words":
                demos = [train[pool_index[i]] for i in ex["demonstrations"][:eff]]
            else:
                demos = [train[i] for i in random_demo_indices(len(train), eff, SEED, q)]
            if task == "captioning":
                ctx = "".join(caption_prompt(d["target"].strip()) + "\n" for d in demos)
                query = caption_prompt()
            else:
                ctx = "".join(vqa_prompt(d["question"], d["target"]) + "\n" for d in demos)
                query = vqa_prompt(ex["question"])
            if k == 0:
                ctx = ctx.replace("<image>", "")
                paths = [ex["image"]]
            else:
                paths = [d["image"] for d in demos] + [ex["image"]]
            out = ev.generate(ctx + query, paths, MAX_NEW[task])
            if task == "captioning":
                preds[ex["id"]] = postprocess_caption(out).strip()
            else:
                preds[ex["id"]] = postprocess_vqa(out).strip()
                accs[ex["id"]] = vqa_accuracy(preds[ex["id"]], ex["answers"])
        if task == "captioning":
            score, _ = cider_d(preds, {ex["id"]: ex["references"] for ex in test[:limit]})
            score *= 100.0
        else:
            score = 100.0 * float(np.mean(list(accs.values())))
        results[str(k)] = {"score": round(score, 2)}
        if accs:
            by_type = defaultdict(list)
            for ex in test[:limit]:
                by_type[ex["question_type"]].append(accs[ex["id"]])
            results[str(k)]["per_question_type"] = {t: round(100.0 * float(np.mean(v)), 2) for t, v in by_type.items()}
        results[str(k)]["predictions"] = {str(i): p for i, p in preds.items()}
        log(f"{task} {k}-shot: {score:.2f} ({len(preds)} examples, {time.time() - t0:.0f} s)")
    return results


def run_classification(ev, classes, train, test, shots, limit, log):
    results = {}
    for k in shots:
        eff = k if k > 0 else 2
        preds, correct = {}, 0
        t0 = time.time()
        for q, ex in enumerate(test[:limit]):
            demos = [train[i] for i in random_demo_indices(len(train), eff, SEED, q)]
            ctx = "".join(caption_prompt(d["target"]) for d in demos)
            if k == 0:
                ctx = ctx.replace("<image>", "")
                paths = [ex["image"]]
            else:
                paths = [d["image"] for d in demos] + [ex["image"]]
            scores = ev.rank(ctx + caption_prompt(), paths, classes)
            pred = int(np.argmax(scores))
            preds[ex["id"]] = pred
            correct += int(pred == ex["label"])
        score = 100.0 * correct / len(preds)
        results[str(k)] = {"score": round(score, 2), "predictions": {str(i): p for i, p in preds.items()}}
        log(f"classification {k}-shot: {score:.2f} ({len(preds)} examples, {time.time() - t0:.0f} s)")
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=MODEL_DIR)
    ap.add_argument("--from-work", action="store_true", help="build from tools/train/work instead of the model dir")
    ap.add_argument("--eval-dir", type=Path, default=None)
    ap.add_argument("--shots", default="0,4,8,16,32")
    ap.add_argument("--tasks", default="captioning,vqa,words,classification")
    ap.add_argument("--limit", type=int, default=None, help="only the first N test examples (smoke tests)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    eval_dir = args.eval_dir or args.model / "eval"
    out_path = args.out or args.model / "scores_torch.json"
    shots = [int(s) for s in args.shots.split(",") if s != ""]
    tasks = [t for t in args.tasks.split(",") if t]

    def log(m):
        print(m, flush=True)

    if args.from_work:
        model, tok = model_mod.load_trained(WORK / "checkpoint.pt", WORK / "lm", WORK / "vision.pt")
        source = "tools/train/work (lm/, vision.pt, checkpoint.pt)"
    else:
        model, tok = model_mod.from_model_dir(args.model)
        source = str(args.model.resolve().relative_to(common.REPO)) if args.model.resolve().is_relative_to(common.REPO) \
            else str(args.model)
    ev = Evaluator(model, tok)
    t_all = time.time()
    res = {"settings": {"model": source, "precision": "fp32 (no autocast)", "seed": SEED, "num_beams": NUM_BEAMS,
                        "length_penalty": LENGTH_PENALTY, "min_new_tokens": 0, "max_new_tokens": MAX_NEW,
                        "eos": "<|endofchunk|>", "do_sample": False, "batch_size": 1, "shots": shots,
                        "zero_shot": "2 demonstrations, '<image>' removed from their text, only the query image",
                        "demonstrations": "SplitMix64(seed*1000003 + test index) partial Fisher-Yates over the train "
                                          "file's examples (file order); words: the question's fixed 'demonstrations'",
                        "cider": "CIDEr-D x100 (pycocoevalcap CiderScorer, n=4, sigma=6, df from the test references), "
                                 "tokens = lower case, punctuation removed, whitespace split",
                        "limit": args.limit},
           "tasks": {}}
    if "captioning" in tasks:
        res["tasks"]["captioning"] = {"metric": "CIDEr", "key": "image_id", "shots": run_generation_task(
            ev, "captioning", load_captions(eval_dir / "captions_train.json"),
            load_captions(eval_dir / "captions_test.json"), shots, args.limit, log)}
    if "vqa" in tasks:
        res["tasks"]["vqa"] = {"metric": "VQA accuracy", "key": "question_id", "shots": run_generation_task(
            ev, "vqa", load_vqa(eval_dir / "vqa_train_questions.json", eval_dir / "vqa_train_annotations.json"),
            load_vqa(eval_dir / "vqa_test_questions.json", eval_dir / "vqa_test_annotations.json"), shots, args.limit, log)}
    if "words" in tasks:
        res["tasks"]["words"] = {"metric": "VQA accuracy (in-context naming task)", "key": "question_id",
                                 "shots": run_generation_task(
            ev, "words", load_vqa(eval_dir / "words_train_questions.json", eval_dir / "words_train_annotations.json"),
            load_vqa(eval_dir / "words_test_questions.json", eval_dir / "words_test_annotations.json"), shots, args.limit, log)}
    if "classification" in tasks:
        classes, tr = load_classification(eval_dir / "classification_train.json")
        classes2, te = load_classification(eval_dir / "classification_test.json")
        assert classes == classes2
        res["tasks"]["classification"] = {"metric": "top-1 accuracy", "key": "image_id", "classes": classes,
                                          "shots": run_classification(ev, classes, tr, te, shots, args.limit, log)}
    res["settings"]["seconds"] = round(time.time() - t_all, 1)
    common.write_json(out_path, res, indent=1)
    log(f"wrote {out_path}")
    for t, r in res["tasks"].items():
        log(f"{t:15s} " + "  ".join(f"{k}-shot {v['score']:6.2f}" for k, v in r["shots"].items()))


if __name__ == "__main__":
    main()

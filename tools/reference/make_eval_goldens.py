"""Goldens for the evaluation metrics (Tests/Fixtures/eval/goldens.json).

- CIDEr-D from pycocoevalcap's Cider scorer on pre-tokenised captions
  (the Java PTB tokenizer is bypassed there);
- PTB tokenisation + punctuation removal as pycocoevalcap does it (needs
  `java`; the tokenizer jar ships with pycocoevalcap), to check the Swift
  approximation on common caption shapes;
- VQA answer normalisation and accuracy from open_flamingo's
  eval/vqa_metric.py (VQAEval.evaluate on hand-made questions);
- demonstration indices of the SplitMix64 sampler that the engine and the
  PyTorch evaluator share;
and the tiny datasets (Tests/Fixtures/eval/tiny) over Tests/Fixtures/images
that the runner and CLI tests evaluate the random-weight fixture model on.

Usage:
  python3 -m venv /tmp/evalref && /tmp/evalref/bin/pip install pycocoevalcap
  /tmp/evalref/bin/python tools/reference/make_eval_goldens.py \
      --vqa-metric /path/to/open_flamingo/eval/vqa_metric.py
"""
import argparse
import glob
import importlib.util
import json
import os
import shutil

from pycocoevalcap.cider.cider import Cider

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "eval", "goldens.json")
TINY = os.path.join(ROOT, "Tests", "Fixtures", "eval", "tiny")

# Tokenised captions (lower case, no punctuation) for CIDEr.
CIDER_REFS = {
    "1": ["a man riding a horse on a beach", "a person rides a brown horse near the ocean",
          "a man on a horse at the beach", "someone riding a horse along the shore", "a horse and rider on the sand"],
    "2": ["two dogs playing in the grass", "a couple of dogs run across a field",
          "two brown dogs playing together on a lawn", "dogs play in a grassy yard"],
    "3": ["a plate of food with broccoli and rice", "a dinner plate with chicken rice and broccoli",
          "food on a white plate", "a meal of rice and vegetables", "a plate topped with rice and greens"],
    "4": ["a red double decker bus on a city street", "a bus driving down the street",
          "a large red bus parked by the curb", "a double decker bus in london", "a red bus on the road"],
    "5": ["a cat sleeping on a couch", "a cat curled up on the sofa", "a gray cat asleep on a couch cushion"],
    "6": ["a kitchen with a stove and a refrigerator", "an empty kitchen with white cabinets",
          "a clean kitchen with appliances", "a small kitchen with a window", "a kitchen with wooden cabinets"],
}
CIDER_HYPS = {
    "1": "a man riding a horse on the beach",
    "2": "two dogs playing in a field",
    "3": "",
    "4": "a red bus a red bus a red bus on a street in a city with many people walking",
    "5": "a cat sleeping on a couch",
    "6": "a dog",
}

PTB_SENTENCES = [
    "A man riding a horse.",
    "Two dogs, one cat; and a bird!",
    "A \"red\" car (parked) on the St. street in the U.S.",
    "It's a dog's toy, isn't it? The dogs' bowls can't be found.",
    "A t-shirt -- with 3.5 stripes and 1,000 dots at 12:30 p.m.",
    "She'll go, they're here, I'm fine, we've done, he'd said, y'all",
    "A $5 bill and 50% off & more... #hashtag @user",
    "and/or [brackets] {braces} 'quoted' `back`",
    "Cannot gonna wanna don't Mr. Smith's cat.",
    "A CAT sits ON a Mat.",
    "A photo of a 'hello' world's end",
    "Two people...on a bench.Looking",
    "it's 5 o'clock, isn't it",
    "A man's hat's brim.",
    "A man in a red shirt is standing next to a building .",
    "A young boy swinging a baseball bat at a ball",
    "An elephant, a giraffe and a zebra: at the zoo?",
    "  A skateboarder   does a trick on a ramp.  ",
    "The woman—holding an umbrella–walks.",
    "etc. at the end etc.",
    "A sign that says 'STOP'.",
    "A man's bike.A woman's car.",
    "A dog 's bone",
    "Looking at the T.V.",
    "He said \"hi!\" loudly.",
    "Vitamin a. Is good",
    "A 10-year-old boy.",
    "2.5-inch screen, 3 p.m.",
    "A man on a skate-board...",
    "A woman with a hat (red).",
    "Two cats' toys",
    "I can't, won't, shouldn't.",
    "A cafe’s sign",
    "A woman\'s bag",
    "A man -- holding a bat.",
    "It is 'cool'",
    "A photo @ night",
    "e-mail and www.google.com",
]

VQA_ANSWERS = [
    "yes", "Yes.", "two", "2", "The dog", "a red car", "an apple", "dont", "isnt it", "10:30", "1,000",
    "3.5", "red, white, and blue", "red,white", "red/blue", "don't know", "none", "ten", "mr. smith",
    "hello!", "  tabs\tand\nnewlines  ", "(parens)", "well-done", "it's", "Im fine", "a.b.c", "u.s.a.",
    "what?", "x = y + z", "back\\slash", "snake_case", "<tag>", "@home", "quo\"te", "semi;colon",
    "one two three", "the the the", "An Apple", "whats up", "no.", "ok ...", "5.", "100.5.",
    "0.5", ".5",
]

VQA_CASES = [
    ("yes", ["yes"] * 10),
    ("yes", ["yes"] * 3 + ["no"] * 7),
    ("yes", ["yes"] * 2 + ["no"] * 8),
    ("yes", ["yes"] + ["no"] * 9),
    ("no", ["yes"] * 10),
    ("2", ["two"] * 4 + ["2"] * 2 + ["3"] * 4),
    ("the dog", ["dog"] * 5 + ["puppy"] * 5),
    ("Red.", ["red"] * 3 + ["red and white"] * 7),
    ("dont know", ["don't know"] * 3 + ["unknown"] * 7),
    ("10:30", ["10:30"] * 4 + ["10:35"] * 6),
    ("tennis", ["tennis", "tennis", "playing tennis", "tennis", "tennis racket", "tennis", "sport", "tennis", "tennis", "tennis"]),
]

DEMO_CASES = [(10, 4, 42, 0), (10, 4, 42, 1), (10, 2, 42, 7), (5, 5, 1, 3), (100, 8, 42, 12345), (3, 2, 0, 0),
              (2048, 32, 42, 999), (7, 3, -5, 2)]

MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def demo_indices(n, k, seed, q):
    state = (seed * 1000003 + q) & MASK
    idx = list(range(n))
    for j in range(k):
        state, r = splitmix64(state)
        r = j + r % (n - j)
        idx[j], idx[r] = idx[r], idx[j]
    return idx[:k]


def cider_goldens():
    gts = CIDER_REFS
    res = {k: [CIDER_HYPS[k]] for k in gts}
    score, scores = Cider().compute_score(gts, res)
    sub = {k: gts[k] for k in ["1", "2"]}
    sub_score, sub_scores = Cider().compute_score(sub, {k: res[k] for k in sub})
    one_score, _ = Cider().compute_score({"1": gts["1"]}, {"1": res["1"]})
    return {
        "references": gts, "candidates": CIDER_HYPS,
        "score": float(score), "per_example": [float(s) for s in scores],
        "subset_12_score": float(sub_score), "subset_12_per_example": [float(s) for s in sub_scores],
        "single_image_score": float(one_score),
    }


def ptb_goldens():
    if shutil.which("java") is None:
        return None
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    caps = {str(i): [{"caption": s}] for i, s in enumerate(PTB_SENTENCES)}
    out = PTBTokenizer().tokenize(caps)
    return [{"text": s, "tokens": out[str(i)][0]} for i, s in enumerate(PTB_SENTENCES)]


def load_vqa_metric(path):
    if path is None:
        found = glob.glob("/work/refenv/lib/python3*/site-packages/open_flamingo/eval/vqa_metric.py")
        path = found[0] if found else None
    if path is None:
        raise SystemExit("pass --vqa-metric PATH/open_flamingo/eval/vqa_metric.py")
    spec = importlib.util.spec_from_file_location("vqa_metric", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def vqa_goldens(mod):
    ev = mod.VQAEval(None, None, n=12)
    norm = []
    for a in VQA_ANSWERS:
        clean = a.replace("\n", " ").replace("\t", " ").strip()
        norm.append({"answer": a, "normalized": ev.processDigitArticle(ev.processPunctuation(clean))})
    # Their evaluate() on hand-made question/annotation objects.
    vqa, res = mod.VQA(), mod.VQA()
    vqa.qa, res.qa, res.dataset = {}, {}, {"annotations": []}
    for qid, (pred, answers) in enumerate(VQA_CASES):
        vqa.qa[qid] = {"question_id": qid, "question_type": "t", "answer_type": "other",
                       "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]}
        res.qa[qid] = {"question_id": qid, "answer": pred}
        res.dataset["annotations"].append(res.qa[qid])
    ev = mod.VQAEval(vqa, res, n=12)
    ev.evaluate()
    cases = [{"prediction": p, "answers": a, "accuracy": ev.evalQA[qid] / 100.0} for qid, (p, a) in enumerate(VQA_CASES)]
    return {"normalization": norm, "accuracy": cases, "overall": ev.accuracy["overall"]}


def write_tiny_datasets():
    img = "../../images/"

    def dump(name, obj):
        with open(os.path.join(TINY, name), "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")

    train = [(101, "exif1_40x24.jpg", ["A red square.", "A small red block."]),
             (102, "exif2_40x24.jpg", ["Two cats on a sofa."]),
             (103, "rgb_48x48.png", ["A blue sky over a field.", "Sky and grass."]),
             (104, "gray_70x50.jpg", ["A gray picture."]),
             (105, "palette_90x70.png", ["Colorful stripes."])]
    test = [(201, "exif3_40x24.jpg", ["A red square on white.", "A red box.", "Red shape."]),
            (202, "jpeg444_45x33.jpg", ["A dog in the park.", "A dog running on grass."]),
            (203, "rgb_37x53.png", ["A tall picture.", "Some colors."])]

    def images(imgs):
        return [{"id": iid, "file_name": img + f} for iid, f, _ in imgs]

    def coco(imgs):
        anns = [(iid, c) for iid, _, caps in imgs for c in caps]
        return {"images": images(imgs),
                "annotations": [{"id": k + 1, "image_id": iid, "caption": c} for k, (iid, c) in enumerate(anns)]}

    def vqa(imgs, qs, start):
        questions, anns = [], []
        for n, (iid, q, answers, demos) in enumerate(qs):
            e = {"question_id": start + n, "image_id": iid, "question": q}
            if demos is not None:
                e["demonstrations"] = demos
            questions.append(e)
            anns.append({"question_id": start + n, "image_id": iid, "multiple_choice_answer": answers[0],
                         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                                     for i, a in enumerate(answers)]})
        return {"questions": questions, "images": images(imgs)}, {"annotations": anns}

    os.makedirs(TINY, exist_ok=True)
    dump("captions_train.json", coco(train))
    dump("captions_test.json", coco(test))
    tq, ta = vqa(train, [(101, "What color?", ["red"] * 8 + ["pink"] * 2, None),
                         (102, "How many cats?", ["two"] * 6 + ["2"] * 4, None),
                         (103, "Is it sunny?", ["yes"] * 10, None),
                         (104, "What color?", ["gray"] * 7 + ["grey"] * 3, None)], 1000)
    sq, sa = vqa(test, [(201, "What color?", ["red"] * 9 + ["orange"], [1003, 1000, 1001, 1002]),
                        (202, "What animal?", ["dog"] * 6 + ["puppy"] * 4, None),
                        (203, "Is it tall?", ["yes"] * 7 + ["no"] * 3, None)], 2000)
    dump("vqa_train_questions.json", tq)
    dump("vqa_train_annotations.json", ta)
    dump("vqa_test_questions.json", sq)
    dump("vqa_test_annotations.json", sa)
    classes = ["red", "blue", "gray"]
    dump("classification_train.json", {"classes": classes, "images": [
        {"id": "t1", "file_name": img + "exif1_40x24.jpg", "label": 0},
        {"id": "t2", "file_name": img + "rgb_48x48.png", "label": 1},
        {"id": "t3", "file_name": img + "gray_70x50.jpg", "label": 2},
        {"id": "t4", "file_name": img + "exif2_40x24.jpg", "label": 0}]})
    dump("classification_test.json", {"classes": classes, "images": [
        {"id": "s1", "file_name": img + "exif3_40x24.jpg", "label": 0},
        {"id": "s2", "file_name": img + "gray_120x90.png", "label": 2},
        {"id": "s3", "file_name": img + "rgb_37x53.png", "label": 1, "demonstrations": ["t2", "t1", "t3"]}]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vqa-metric", help="open_flamingo/eval/vqa_metric.py")
    args = ap.parse_args()
    out = {
        "cider": cider_goldens(),
        "ptb": ptb_goldens(),
        "vqa": vqa_goldens(load_vqa_metric(args.vqa_metric)),
        "demos": [{"n": n, "k": k, "seed": s, "query": q, "indices": demo_indices(n, k, s, q)} for n, k, s, q in DEMO_CASES],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_tiny_datasets()
    print("wrote", OUT, "and", TINY)


if __name__ == "__main__":
    main()

"""Synthetic interleaved image/text data for flamingo-mini.

Scenes: 1-3 shapes (circle / square / triangle) in 6 colours and 2 sizes at random
non-overlapping positions on a light background, rendered with PIL at 4x and box-reduced to
64x64 (= the model's image_size, so CLIP preprocessing does no resampling), stored as JPEG
(quality 90).

Text, in OpenFlamingo's exact chunk formats (spec/70 §1), chunks joined by "\\n":
  captioning   <image>Output:{caption}<|endofchunk|>
  VQA          <image>Question:{q} Short answer:{a}<|endofchunk|>
  class name   <image>Output:{shape}<|endofchunk|>                  (single-object scenes)
  naming task  <image>Question:what is this called? Short answer:{word}<|endofchunk|>
The naming task draws, per sequence (training) or per episode (evaluation), a random mapping
colour -> invented word; its images show 1-3 shapes of one colour, so the answer is only
defined by the demonstrations.

`python -m data` (run from tools/train, or `python tools/train/data.py`) writes the held-out
evaluation data into models/flamingo-mini/eval/ and the demo images into
models/flamingo-mini/examples/; the training stages import the generators.
"""

from __future__ import annotations

import io
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import COLOUR_NAMES, COLOURS, EVAL_DIR, IMAGE_SIZE, MODEL_DIR, NUMBER_WORDS, SHAPES, SIZES, WORDS, write_json  # noqa: E402

EOC = "<|endofchunk|>"
IMG = "<image>"
SUPERSAMPLE = 4
JPEG_QUALITY = 90


# ---------------------------------------------------------------------------------------------
# scenes
# ---------------------------------------------------------------------------------------------


@dataclass
class Obj:
    shape: str
    colour: str
    size: str
    x: float  # centre, pixels in the 64x64 image
    y: float
    r: float  # half extent

    @property
    def name(self):
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    objects: List[Obj]
    background: Tuple[int, int, int]


def _radius(rng: random.Random, size: str) -> float:
    return rng.uniform(5.0, 6.5) if size == "small" else rng.uniform(10.0, 12.5)


def sample_scene(rng: random.Random, n: Optional[int] = None, colours: Optional[Sequence[str]] = None,
                 specs: Optional[Sequence[Tuple[str, str, str]]] = None) -> Scene:
    """A random scene. n objects (1-3); colours restricts the palette; specs fixes
    (shape, colour, size) per object."""
    for _attempt in range(100):
        if specs is None:
            k = n if n is not None else rng.choice([1, 1, 2, 2, 2, 3, 3, 3])
            pal = list(colours) if colours is not None else COLOUR_NAMES
            want = [(rng.choice(SHAPES), rng.choice(pal), rng.choice(SIZES)) for _ in range(k)]
        else:
            want = list(specs)
        objs: List[Obj] = []
        ok = True
        for shape, colour, size in want:
            r = _radius(rng, size)
            for _try in range(60):
                x = rng.uniform(r + 2, IMAGE_SIZE - r - 2)
                y = rng.uniform(r + 2, IMAGE_SIZE - r - 2)
                if all(math.hypot(x - o.x, y - o.y) > r + o.r + 3 for o in objs):
                    objs.append(Obj(shape, colour, size, x, y, r))
                    break
            else:
                ok = False
                break
        if ok:
            base = rng.randint(222, 250)
            bg = tuple(min(255, max(0, base + rng.randint(-6, 6))) for _ in range(3))
            return Scene(objs, bg)
    raise RuntimeError("could not place the objects")


def render(scene: Scene) -> Image.Image:
    s = SUPERSAMPLE
    im = Image.new("RGB", (IMAGE_SIZE * s, IMAGE_SIZE * s), scene.background)
    _draw(ImageDraw.Draw(im), scene, lambda k, o: COLOURS[o.colour])
    return im.reduce(s)


def _draw(d: ImageDraw.ImageDraw, scene: Scene, fill):
    s = SUPERSAMPLE
    for k, o in enumerate(scene.objects):
        c = fill(k, o)
        x, y, r = o.x * s, o.y * s, o.r * s
        if o.shape == "circle":
            d.ellipse([x - r, y - r, x + r, y + r], fill=c)
        elif o.shape == "square":
            h = r * 0.88
            d.rectangle([x - h, y - h, x + h, y + h], fill=c)
        else:  # equilateral triangle, apex up, circumradius r * 1.1
            R = r * 1.12
            pts = [(x, y - R), (x - R * math.sqrt(3) / 2, y + R / 2), (x + R * math.sqrt(3) / 2, y + R / 2)]
            d.polygon(pts, fill=c)


def label_map(scene: Scene) -> Image.Image:
    """64x64 object-index map (0 = background, k + 1 = object k), same geometry as render()."""
    s = SUPERSAMPLE
    im = Image.new("L", (IMAGE_SIZE * s, IMAGE_SIZE * s), 0)
    _draw(ImageDraw.Draw(im), scene, lambda k, o: k + 1)
    return im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.NEAREST)


def jpeg_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def jpeg_roundtrip(scene: Scene) -> np.ndarray:
    """The uint8 HxWx3 pixels a reader of the scene's JPEG gets (what training sees)."""
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes(render(scene)))).convert("RGB"))


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _groups(scene: Scene) -> List[List[Obj]]:
    """Objects grouped by (colour, shape), groups in left-to-right order of their leftmost object."""
    order = sorted(scene.objects, key=lambda o: o.x)
    groups: List[List[Obj]] = []
    for o in order:
        for g in groups:
            if g[0].colour == o.colour and g[0].shape == o.shape:
                g.append(o)
                break
        else:
            groups.append([o])
    return groups


def _group_text(g: List[Obj], with_size: bool = True) -> str:
    if len(g) == 1:
        o = g[0]
        words = ([o.size] if with_size else []) + [o.colour, o.shape]
        return f"{_article(words[0])} {' '.join(words)}"
    sizes = {o.size for o in g}
    words = [NUMBER_WORDS[len(g)]] + ([g[0].size] if with_size and len(sizes) == 1 else []) + [g[0].colour, g[0].shape + "s"]
    return " ".join(words)


def _join(parts: List[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def captions(scene: Scene) -> List[str]:
    """Three reference captions: canonical (left to right), reversed order (or "there is/are ..."
    for one group), and without size words."""
    groups = _groups(scene)
    canon = _join([_group_text(g) for g in groups])
    if len(groups) > 1:
        other = _join([_group_text(g) for g in reversed(groups)])
    else:
        other = ("there is " if len(groups[0]) == 1 else "there are ") + canon
    nosize = _join([_group_text(g, with_size=False) for g in groups])
    return [canon, other, nosize]


def vqa_candidates(scene: Scene, rng: random.Random) -> List[Tuple[str, str, str, str]]:
    """(question, answer, question_type, answer_type) pairs answerable from the scene, one per
    question family (some families have no applicable question in a given scene)."""
    objs = scene.objects
    out = []
    shapes_present = sorted({o.shape for o in objs}, key=SHAPES.index)
    colours_present = sorted({o.colour for o in objs}, key=COLOUR_NAMES.index)
    # what color is the <shape>?  (the shape occurs exactly once)
    uniq_shapes = [s for s in shapes_present if sum(o.shape == s for o in objs) == 1]
    if uniq_shapes:
        s = rng.choice(uniq_shapes)
        o = next(o for o in objs if o.shape == s)
        out.append((f"what color is the {s}?", o.colour, "what color is the", "other"))
    # what shape is the <colour> object?  (the colour occurs exactly once)
    uniq_cols = [c for c in colours_present if sum(o.colour == c for o in objs) == 1]
    if uniq_cols:
        c = rng.choice(uniq_cols)
        o = next(o for o in objs if o.colour == c)
        out.append((f"what shape is the {c} object?", o.shape, "what shape is the", "other"))
    # how many <shape>s are there?
    s = rng.choice(shapes_present) if rng.random() < 0.8 else rng.choice(SHAPES)
    out.append((f"how many {s}s are there?", str(sum(o.shape == s for o in objs)), "how many", "number"))
    # how many objects are there?
    out.append(("how many objects are there?", str(len(objs)), "how many", "number"))
    # is there a <colour> <shape>?
    if rng.random() < 0.5:
        o = rng.choice(objs)
        out.append((f"is there {_article(o.colour)} {o.colour} {o.shape}?", "yes", "is there a", "yes/no"))
    else:
        present = {(o.colour, o.shape) for o in objs}
        absent = [(c, s) for c in COLOUR_NAMES for s in SHAPES if (c, s) not in present]
        c, s = rng.choice(absent)
        out.append((f"is there {_article(c)} {c} {s}?", "no", "is there a", "yes/no"))
    # what size is the <colour> <shape>?  (exactly one such object)
    uniq = [o for o in objs if sum(p.colour == o.colour and p.shape == o.shape for p in objs) == 1]
    if uniq:
        o = rng.choice(uniq)
        out.append((f"what size is the {o.colour} {o.shape}?", o.size, "what size is the", "other"))
    return out


def sample_vqa(scene: Scene, rng: random.Random) -> Tuple[str, str, str, str]:
    return rng.choice(vqa_candidates(scene, rng))


def caption_chunk(text: str, image: bool = True) -> str:
    return f"{IMG if image else ''}Output:{text}{EOC}"


def vqa_chunk(q: str, a: str, image: bool = True) -> str:
    return f"{IMG if image else ''}Question:{q} Short answer:{a}{EOC}"


WORD_QUESTION = "what is this called?"


# ---------------------------------------------------------------------------------------------
# training sequences (token-level pieces so that the LM corpus can splice in proxy tokens)
# ---------------------------------------------------------------------------------------------


@dataclass
class Chunk:
    text: str  # the chunk's text without the leading <image>
    scene: Optional[Scene]  # None: a text-only chunk (zero-shot style demonstration)
    colour: Optional[str] = None  # naming task: the colour that defines the answer


TASK_WEIGHTS = [("caption", 0.30), ("vqa", 0.34), ("words", 0.28), ("classname", 0.08)]


def fresh_scene(rng: random.Random, kind: str, colour: Optional[str] = None) -> Scene:
    """kind: "any" (1-3 objects), "single" (1 object) or "mono" (1-3 objects of `colour`)."""
    if kind == "single":
        return sample_scene(rng, n=1)
    if kind == "mono":
        return sample_scene(rng, colours=[colour])
    return sample_scene(rng)


def sample_sequence(rng: random.Random, max_images: int = 5, task: Optional[str] = None,
                    n_images: Optional[int] = None, scene_fn=fresh_scene,
                    weights=None) -> Tuple[str, List[Chunk]]:
    """One interleaved training document: (task, chunks). Chunks with scene None are text-only
    (their text starts without <image>); the others start with <image>. scene_fn(rng, kind,
    colour) provides the scenes (fresh ones, or entries of a pre-rendered bank)."""
    if task is None:
        r = rng.random()
        acc = 0.0
        for task, w in (weights or TASK_WEIGHTS):
            acc += w
            if r < acc:
                break
    chunks: List[Chunk] = []
    if task == "words":
        n = n_images or rng.randint(2, max_images)
        m = rng.choice([2, 3]) if n >= 3 else 2
        cols = rng.sample(COLOUR_NAMES, m)
        words = rng.sample(WORDS, m)
        mapping = dict(zip(cols, words))
        seq_cols = [rng.choice(cols) for _ in range(n)]
        if n >= 2 and seq_cols[-1] not in seq_cols[:-1]:  # make the last query answerable in context
            seq_cols[-1] = rng.choice(seq_cols[:-1])
        for c in seq_cols:
            sc = scene_fn(rng, "mono", c)
            chunks.append(Chunk(f"Question:{WORD_QUESTION} Short answer:{mapping[c]}{EOC}", sc, c))
        return task, chunks
    n = n_images or rng.randint(1, max_images)
    # 1 in 8 non-naming documents starts with two text-only demonstrations (the zero-shot format)
    kind = "single" if task == "classname" else "any"
    if rng.random() < 0.125:
        for _ in range(2):
            chunks.append(Chunk(_chunk_text(task, scene_fn(rng, kind, None), rng), None))
    for _ in range(n):
        sc = scene_fn(rng, kind, None)
        chunks.append(Chunk(_chunk_text(task, sc, rng), sc))
    return task, chunks


def _chunk_text(task: str, sc: Scene, rng: random.Random) -> str:
    if task == "caption":
        caps = captions(sc)
        cap = caps[0] if rng.random() < 0.6 else rng.choice(caps[1:])
        return f"Output:{cap}{EOC}"
    if task == "classname":
        return f"Output:{sc.objects[0].shape}{EOC}"
    q, a, _, _ = sample_vqa(sc, rng)
    return f"Question:{q} Short answer:{a}{EOC}"


def sequence_text(chunks: List[Chunk]) -> str:
    return "\n".join((IMG if c.scene is not None else "") + c.text for c in chunks)


class Bank:
    """A pre-rendered set of training scenes (JPEG round-tripped pixels) that sequences draw
    from, so that the frozen vision encoder runs once per image."""

    def __init__(self, seed: int, n_any: int, n_mono_per_colour: int):
        rng = random.Random(seed)
        self.scenes: List[Scene] = [sample_scene(rng) for _ in range(n_any)]
        self.single = [i for i, s in enumerate(self.scenes) if len(s.objects) == 1]
        self.mono = {}
        for c in COLOUR_NAMES:
            start = len(self.scenes)
            self.scenes += [sample_scene(rng, colours=[c]) for _ in range(n_mono_per_colour)]
            self.mono[c] = list(range(start, len(self.scenes)))
        self.index = {id(s): i for i, s in enumerate(self.scenes)}

    def pixels(self) -> np.ndarray:
        return np.stack([jpeg_roundtrip(s) for s in self.scenes])

    def scene_fn(self, rng: random.Random, kind: str, colour: Optional[str] = None) -> Scene:
        if kind == "single":
            return self.scenes[rng.choice(self.single)]
        if kind == "mono":
            return self.scenes[rng.choice(self.mono[colour])]
        return self.scenes[rng.randrange(len(self.scenes))]


# ---------------------------------------------------------------------------------------------
# held-out evaluation data (models/flamingo-mini/eval)
# ---------------------------------------------------------------------------------------------

EVAL_SEED = 20240601
N_TRAIN, N_TEST = 300, 150
WORD_EPISODES = 10
WORD_TRAIN_PER_EPISODE = 32
WORD_TEST_PER_EPISODE = 15
WORD_COLOURS_PER_EPISODE = 3
N_DEMOS = 32
WORD_SHARED_IMAGES = 20


def _save(scene: Scene, name: str) -> str:
    path = EVAL_DIR / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(render(scene)))
    return f"images/{name}"


def _vqa_answers(a: str):
    return [{"answer_id": i + 1, "answer": a, "answer_confidence": "yes"} for i in range(10)]


def build_eval(seed: int = EVAL_SEED):
    rng = random.Random(seed)
    if EVAL_DIR.exists():
        for p in sorted(EVAL_DIR.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    EVAL_DIR.mkdir(parents=True, exist_ok=True)

    # --- captions + VQA (the VQA questions are asked about the caption images) -------------
    for split, n, id0, q0 in (("train", N_TRAIN, 100000, 1000000), ("test", N_TEST, 110000, 1100000)):
        images, anns, questions, vanns = [], [], [], []
        qtypes = ["what color is the", "what shape is the", "how many", "is there a", "what size is the"]
        for i in range(n):
            sc = sample_scene(rng)
            iid = id0 + i
            fn = _save(sc, f"{split}_{iid}.jpg")
            images.append({"id": iid, "file_name": fn})
            for j, cap in enumerate(captions(sc)):
                anns.append({"id": iid * 10 + j, "image_id": iid, "caption": cap})
            cands = vqa_candidates(sc, rng)
            want = qtypes[i % len(qtypes)]  # balance question families
            pick = [c for c in cands if c[2] == want] or cands
            q, a, qt, at = rng.choice(pick)
            qid = q0 + i
            questions.append({"question_id": qid, "image_id": iid, "question": q})
            vanns.append({"question_id": qid, "image_id": iid, "question_type": qt, "answer_type": at,
                          "multiple_choice_answer": a, "answers": _vqa_answers(a)})
        write_json(EVAL_DIR / f"captions_{split}.json", {"images": images, "annotations": anns})
        write_json(EVAL_DIR / f"vqa_{split}_questions.json", {"images": images, "questions": questions})
        write_json(EVAL_DIR / f"vqa_{split}_annotations.json", {"annotations": vanns})

    # --- classification: shape of the single object --------------------------------------
    for split, n, id0 in (("train", N_TRAIN, 300000), ("test", N_TEST, 310000)):
        images = []
        for i in range(n):
            label = i % len(SHAPES)
            sc = sample_scene(rng, specs=[(SHAPES[label], rng.choice(COLOUR_NAMES), rng.choice(SIZES))])
            iid = id0 + i
            images.append({"id": iid, "file_name": _save(sc, f"{split}_{iid}.jpg"), "label": label})
        order = list(range(n))
        rng.shuffle(order)
        images = [images[k] for k in order]
        write_json(EVAL_DIR / f"classification_{split}.json", {"classes": SHAPES, "images": images})

    # --- in-context naming task ----------------------------------------------------------
    # The demonstration pool's questions of all episodes share 20 one-colour images per colour
    # (the answer depends on the episode's mapping, not on the image alone); every test query
    # has its own image.
    shared = {}
    tr_imgs = []
    for ci, c in enumerate(COLOUR_NAMES):
        shared[c] = []
        for k in range(WORD_SHARED_IMAGES):
            iid = 200000 + ci * 100 + k
            tr_imgs.append({"id": iid, "file_name": _save(sample_scene(rng, colours=[c]), f"train_{iid}.jpg")})
            shared[c].append(iid)
    tr_qs, tr_anns, te_imgs, te_qs, te_anns = [], [], [], [], []
    episodes = []
    for e in range(WORD_EPISODES):
        cols = rng.sample(COLOUR_NAMES, WORD_COLOURS_PER_EPISODE)
        words = rng.sample(WORDS, WORD_COLOURS_PER_EPISODE)
        mapping = dict(zip(cols, words))
        episodes.append(mapping)
        pool = []  # (qid, colour)
        tr_cols = [cols[k % len(cols)] for k in range(WORD_TRAIN_PER_EPISODE)]
        rng.shuffle(tr_cols)
        picks = {c: rng.sample(shared[c], tr_cols.count(c)) for c in cols}
        for k, c in enumerate(tr_cols):
            iid = picks[c].pop()
            qid = 2000000 + e * 100 + k
            tr_qs.append({"question_id": qid, "image_id": iid, "question": WORD_QUESTION, "episode": e})
            tr_anns.append({"question_id": qid, "image_id": iid, "question_type": "what is this called", "answer_type": "other",
                            "multiple_choice_answer": mapping[c], "answers": _vqa_answers(mapping[c])})
            pool.append((qid, c))
        te_cols = [cols[k % len(cols)] for k in range(WORD_TEST_PER_EPISODE)]
        rng.shuffle(te_cols)
        for k, c in enumerate(te_cols):
            iid = 210000 + e * 100 + k
            qid = 2100000 + e * 100 + k
            sc = sample_scene(rng, colours=[c])
            te_imgs.append({"id": iid, "file_name": _save(sc, f"test_{iid}.jpg")})
            te_qs.append({"question_id": qid, "image_id": iid, "question": WORD_QUESTION, "episode": e,
                          "demonstrations": _word_demos(rng, pool, c)})
            te_anns.append({"question_id": qid, "image_id": iid, "question_type": "what is this called", "answer_type": "other",
                            "multiple_choice_answer": mapping[c], "answers": _vqa_answers(mapping[c])})
    # train pool in a shuffled file order (episodes interleaved), test in episode order
    order = list(range(len(tr_qs)))
    rng.shuffle(order)
    tr_qs = [tr_qs[k] for k in order]
    tr_anns = [tr_anns[k] for k in order]
    write_json(EVAL_DIR / "words_train_questions.json", {"images": tr_imgs, "questions": tr_qs,
                                                           "episodes": [dict(m) for m in episodes]})
    write_json(EVAL_DIR / "words_train_annotations.json", {"annotations": tr_anns})
    write_json(EVAL_DIR / "words_test_questions.json", {"images": te_imgs, "questions": te_qs})
    write_json(EVAL_DIR / "words_test_annotations.json", {"annotations": te_anns})


def _word_demos(rng: random.Random, pool: List[Tuple[int, str]], colour: str) -> List[int]:
    """32 demonstrations of the episode: every colour present, the query's colour within the
    first 4 (so every prefix of length >= 4 contains it), otherwise random order."""
    assert len(pool) == N_DEMOS
    ids = [q for q, _ in pool]
    rng.shuffle(ids)
    col = dict(pool)
    if not any(col[q] == colour for q in ids[:4]):
        j = next(k for k, q in enumerate(ids) if col[q] == colour)
        t = rng.randrange(4)
        ids[t], ids[j] = ids[j], ids[t]
    return ids


def build_examples():
    """3-4 demo images (not from the test set) + a README with their true captions/answers."""
    ex = MODEL_DIR / "examples"
    ex.mkdir(parents=True, exist_ok=True)
    rng = random.Random(777)
    items = [
        ("red_circle.jpg", Scene([Obj("circle", "red", "large", 32, 32, 12.0)], (240, 240, 240))),
        ("blue_squares.jpg", Scene([Obj("square", "blue", "small", 16, 20, 6.0), Obj("square", "blue", "large", 42, 42, 11.5)],
                                   (236, 238, 240))),
        ("three_shapes.jpg", Scene([Obj("triangle", "green", "large", 16, 44, 11.0), Obj("circle", "yellow", "small", 36, 14, 6.0),
                                    Obj("square", "purple", "small", 50, 44, 6.0)], (242, 240, 236))),
        ("orange_triangle.jpg", Scene([Obj("triangle", "orange", "small", 40, 26, 6.5)], (238, 238, 238))),
    ]
    lines = ["Demo images for flamingo-mini (rendered by tools/train/data.py build_examples; not part of the",
             "evaluation sets). True caption (the first reference is the canonical one) and answers:", ""]
    for name, sc in items:
        (ex / name).write_bytes(jpeg_bytes(render(sc)))
        caps = captions(sc)
        lines.append(f"{name}")
        lines.append(f"  captions: {' | '.join(caps)}")
        for q, a, _, _ in vqa_candidates(sc, rng):
            lines.append(f"  Q: {q}  A: {a}")
        if len(sc.objects) == 1:
            lines.append(f"  class: {sc.objects[0].shape}")
        lines.append("")
    (ex / "README").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    build_eval()
    build_examples()
    total = sum(p.stat().st_size for p in EVAL_DIR.rglob("*") if p.is_file())
    print(f"wrote {EVAL_DIR} ({total / 1e6:.2f} MB)")

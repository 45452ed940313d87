"""The Flamingo-paper configuration through the C ABI from Python: an NFNet
encoder and a resampler with frame/media-time embeddings, a prompt with two
images and one 8-frame video (Tests/Fixtures/flamingo_paper_tiny, made by
tools/reference/make_paper_fixture.py from timm + open_flamingo)."""

import json

import pytest

import flamingo
from conftest import require_fixture
from reference import read, rel_err


@pytest.fixture(scope="module")
def paper():
    d = require_fixture("flamingo_paper_tiny")
    ref = read(d / "reference.safetensors")
    meta = json.loads((d / "reference.json").read_text(encoding="utf-8"))
    with flamingo.Model(d) as model:
        yield model, ref, meta


def media(ref, meta):
    px = ref["input.pixels"]
    per = len(px) // px.shape[0]
    frames = [flamingo.Media.pixels(px.data[i * per:(i + 1) * per]) for i in range(px.shape[0])]
    items, at = [], 0
    for f in meta["frames_per_media"]:
        items.append(frames[at] if f == 1 else flamingo.Media.frames(frames[at:at + f]))
        at += f
    return items


def test_info_reports_the_nfnet(paper):
    model, _, _ = paper
    assert model.info.image_size == 64 and model.info.vision_tokens == 4 and model.info.visual_dim == 64


def test_two_images_and_a_video_match_reference(paper):
    model, ref, meta = paper
    ids, logits = list(ref["input.input_ids"].data), ref["logits"]
    with model.session() as s:
        last = s.set_prompt(meta["prompt"], media(ref, meta))
        assert len(s) == len(ids)
        assert rel_err(last, logits.row(len(ids) - 1)) <= 1e-4
        tokens, _ = s.generate(meta["greedy_steps"], stop_at_endofchunk=False)
        assert tokens == list(ref["greedy.ids"].data)


def test_visual_tokens_of_the_video(paper):
    model, ref, meta = paper
    with model.session() as s:
        s.set_prompt(meta["prompt"], media(ref, meta), logits=False)
        # the same prompt with the video's frames reversed is a different video
        items = media(ref, meta)
        items[2] = flamingo.Media.frames(list(reversed(items[2].data)))
        other = s.set_prompt(meta["prompt"], items)
        last = s.set_prompt(meta["prompt"], media(ref, meta))
        assert rel_err(other, last) > 1e-3


def test_frame_errors(paper):
    model, ref, meta = paper
    frame = media(ref, meta)[0]
    with model.session() as s:
        with pytest.raises(flamingo.InvalidArgumentError):  # 9 frames > max_num_frames 8
            s.set_prompt("<image>x", [flamingo.Media.frames([frame] * 9)])
        with pytest.raises(ValueError):
            flamingo.Media.frames([])
        with pytest.raises(flamingo.IoError):
            s.set_prompt("<image>x", [flamingo.Media.frame_dir("/nonexistent/frames")])
        s.set_prompt("<image>x", [flamingo.Media.frames([frame] * 8)], logits=False)  # still usable

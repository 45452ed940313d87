"""Model.stream: an iterator over generated text, stoppable by leaving the loop."""
import pytest

import flamingo

from conftest import fixtures_dir, require_fixture

IMAGE = str(fixtures_dir() / "images" / "exif1_40x24.jpg")


@pytest.mark.parametrize("name", ["mpt_tiny", "llama_tiny"])
def test_stream_equals_generate(name):
    with flamingo.Model(str(require_fixture(name))) as model:
        pieces = list(model.stream("<image>A", [IMAGE], max_new_tokens=6))
        assert "".join(pieces) == model.generate("<image>A", [IMAGE], max_new_tokens=6, num_beams=1)


def test_leaving_the_loop_stops_generation():
    with flamingo.Model(str(require_fixture("mpt_tiny"))) as model:
        it = model.stream("<image>A", [IMAGE], max_new_tokens=50)
        first = next(it)
        it.close()  # joins the worker; must not hang
        assert isinstance(first, str)


def test_errors_reach_the_consumer():
    with flamingo.Model(str(require_fixture("mpt_tiny"))) as model:
        with pytest.raises(flamingo.InvalidArgumentError):
            list(model.stream("<image><image>A", [IMAGE]))

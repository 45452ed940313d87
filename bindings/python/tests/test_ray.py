"""flamingo.ray on a real local Ray (ray.init(num_cpus=2)): Ray Data captions the
flamingo-mini eval images, each caption equal to `flamingo caption`'s; Ray Serve answers
OpenAI-style requests over loopback HTTP. Skipped when Ray is not installed."""
import json
import os
import socket
import subprocess
import urllib.request

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
serve = pytest.importorskip("ray.serve")

from conftest import ROOT  # noqa: E402

from flamingo.ray import FlamingoDeployment, FlamingoPredictor  # noqa: E402

MINI = ROOT / "models" / "flamingo-mini"
CLI = os.environ.get("FLAMINGO_CLI", str(ROOT / "build" / "prefix" / "bin" / "flamingo"))


@pytest.fixture(scope="module")
def local_ray():
    if not os.path.exists(CLI) or not (MINI / "config.json").is_file():
        pytest.skip("needs the flamingo command and models/flamingo-mini")
    env = {"FLAMINGO_CLI": CLI, "FLAMINGO_LIBRARY": os.environ["FLAMINGO_LIBRARY"]}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, logging_level="ERROR")
    yield
    serve.shutdown()
    ray.shutdown()


def cli_captions(images):
    out = subprocess.run([CLI, "caption", "-m", str(MINI), "--json", *map(str, images)], capture_output=True, text=True,
                         check=True).stdout
    return {row["image"]: row["caption"] for row in json.loads(out)}


def test_ray_data_captions_equal_the_cli(local_ray):
    images = sorted((MINI / "eval" / "images").iterdir())[:6]
    ds = ray.data.from_items([{"image": str(p)} for p in images])
    rows = ds.map_batches(FlamingoPredictor, fn_constructor_kwargs={"model_dir": str(MINI), "threads": 1},
                          compute=ray.data.ActorPoolStrategy(size=2), batch_size=3).take_all()
    want = cli_captions(images)
    assert {r["image"]: r["caption"] for r in rows} == want
    assert len(set(want.values())) > 1


def test_ray_serve_answers_over_http(local_ray):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(FlamingoDeployment.bind(str(MINI), ["--threads", "1"]), route_prefix="/")
    image = sorted((MINI / "eval" / "images").iterdir())[0]
    body = {"prompt": "<image>Output:", "max_tokens": 20, "num_beams": 3, "length_penalty": 0.0,
            "images": [__import__("base64").b64encode(image.read_bytes()).decode()]}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with opener.open(req, timeout=120) as r:
        answer = json.loads(r.read())
    text = answer["choices"][0]["text"].split("Output")[0].replace('"', "").strip()
    assert text == cli_captions([image])[str(image)]
    with opener.open(f"http://127.0.0.1:{port}/v1/models", timeout=60) as r:
        assert json.loads(r.read())["data"][0]["id"] == "flamingo-mini"

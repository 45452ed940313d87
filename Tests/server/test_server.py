"""`flamingo serve` with real clients: the `openai` Python package and curl, on the mpt_tiny
fixture. Every answer is checked against the engine itself (`flamingo generate --json` with the
same prompt and image), so batching, streaming and caching must not change a token.

    FLAMINGO_CLI=build/prefix/bin/flamingo python3 -m pytest -q Tests/server
"""
import base64
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "Tests" / "Fixtures" / "mpt_tiny"
IMAGES = ROOT / "Tests" / "Fixtures" / "images"
CLI = os.environ.get("FLAMINGO_CLI", str(ROOT / "build" / "prefix" / "bin" / "flamingo"))
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Server:
    def __init__(self, *flags):
        self.proc = subprocess.Popen([CLI, "serve", "-m", str(FIXTURE), "--port", "0", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.port = None
        deadline = time.time() + 60
        while self.port is None and time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "flamingo serve: listening on" in line:
                self.port = int(line.rsplit(":", 1)[1])
        assert self.port, "the server did not start"
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep draining
        self.url = f"http://127.0.0.1:{self.port}"
        while time.time() < deadline:
            if self.get("/health")[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError("the model did not load")

    def request(self, path, body=None, headers=None, method=None):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {}, method=method)
        try:
            with NO_PROXY.open(req, timeout=60) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def get(self, path, headers=None):
        return self.request(path, headers=headers)

    def post(self, path, body, headers=None):
        return self.request(path, body, headers)

    def client(self, key="none"):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    s = Server("--parallel", "4", "--media-path", str(IMAGES))
    yield s
    s.stop()


def data_uri(name):
    return "data:image/jpeg;base64," + base64.b64encode((IMAGES / name).read_bytes()).decode()


def engine_text(prompt, image, max_tokens, extra=()):
    out = subprocess.run([CLI, "generate", "-m", str(FIXTURE), "--prompt", prompt, "--image", str(IMAGES / image),
                          "--max-new-tokens", str(max_tokens), "--json", *extra], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["text"]


def chat_messages(image, text):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(image)}},
                                         {"type": "text", "text": text}]}]


def test_health_models_and_metrics(server):
    assert json.loads(server.get("/health")[1]) == {"status": "ok"}
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["mpt_tiny"]
    status, text, headers = server.get("/metrics")
    assert status == 200 and "flamingo_requests_total" in text and "flamingo_busy_sessions" in text


def test_chat_matches_the_engine(server):
    r = server.client().chat.completions.create(model="mpt_tiny", messages=chat_messages("exif1_40x24.jpg", "An image of"),
                                                max_tokens=8)
    assert r.choices[0].message.content == engine_text("<image>An image of", "exif1_40x24.jpg", 8)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_equals_whole(server):
    c = server.client()
    msgs = chat_messages("exif2_40x24.jpg", "A photo of")
    whole = c.chat.completions.create(model="m", messages=msgs, max_tokens=10).choices[0].message.content
    pieces, finish = [], None
    for chunk in c.chat.completions.create(model="m", messages=msgs, max_tokens=10, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        else:
            assert chunk.usage.completion_tokens <= 10
    assert "".join(pieces) == whole and finish in ("stop", "length")


def test_completions_with_images_stop_and_curl(server):
    img = base64.b64encode((IMAGES / "exif1_40x24.jpg").read_bytes()).decode()
    r = server.client().completions.create(model="m", prompt="<image>Output:", max_tokens=6,
                                           extra_body={"images": [img]})
    want = engine_text("<image>Output:", "exif1_40x24.jpg", 6)
    assert r.choices[0].text == want
    if len(want) > 2:  # a stop string cuts the text before it
        stop = want[2:4]
        r = server.client().completions.create(model="m", prompt="<image>Output:", max_tokens=6, stop=stop,
                                               extra_body={"images": [img]})
        assert r.choices[0].text == want[: want.index(stop)] and r.choices[0].finish_reason == "stop"
    body = json.dumps({"prompt": "<image>Output:", "images": [img], "max_tokens": 6, "stream": True})
    out = subprocess.run(["curl", "-sN", "--noproxy", "*", server.url + "/v1/completions", "-d", body],
                         capture_output=True, text=True, check=True).stdout
    events = [line[6:] for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == want


def test_file_urls_under_media_path_and_the_image_cache(server):
    url = "file://" + str(IMAGES / "exif3_40x24.jpg")
    msgs = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "A"}]}]
    hits = lambda: float(next(l.split()[1] for l in server.get("/metrics")[1].splitlines()  # noqa: E731
                              if l.startswith("flamingo_image_cache_hits_total")))
    before = hits()
    first = server.client().chat.completions.create(model="m", messages=msgs, max_tokens=5)
    again = server.client().chat.completions.create(model="m", messages=msgs, max_tokens=5)
    assert first.choices[0].message.content == again.choices[0].message.content == engine_text("<image>A", "exif3_40x24.jpg", 5)
    assert hits() >= before + 1
    assert again.model_extra["timings"]["cached_images"] == 1


def test_concurrent_requests_equal_sequential_ones(server):
    """Eight requests at once through four sessions: continuous batching changes no token,
    greedy or seeded sampling."""
    jobs = [(f"exif{1 + k % 4}_40x24.jpg", ["An image of", "A photo of", "Output:", "Two"][k // 2 % 4],
             {} if k % 2 == 0 else {"temperature": 0.8, "top_p": 0.9, "seed": 7 + k}) for k in range(8)]

    def run(job):
        image, text, sampling = job
        return server.client().chat.completions.create(model="m", messages=chat_messages(image, text), max_tokens=12,
                                                       **sampling).choices[0].message.content

    alone = [run(j) for j in jobs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(run, jobs))
    assert together == alone
    for (image, text, sampling), got in zip(jobs, alone):
        if not sampling:
            assert got == engine_text("<image>" + text, image, 12)


def test_n_choices_and_beams(server):
    msgs = chat_messages("exif1_40x24.jpg", "An image of")
    r = server.client().chat.completions.create(model="m", messages=msgs, max_tokens=6, n=3, temperature=1.0, seed=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    beams = server.client().chat.completions.create(model="m", messages=msgs, max_tokens=6,
                                                    extra_body={"num_beams": 3, "length_penalty": 0.0})
    assert beams.choices[0].message.content == engine_text("<image>An image of", "exif1_40x24.jpg", 6,
                                                           ("--beams", "3", "--length-penalty", "0"))


@pytest.mark.parametrize("body,message", [
    (b"{not json", "not a JSON object"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "<image>no image given"}]}, "marker"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]}]},
     "remote fetching is disabled"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]},
     "outside --media-path"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     "image"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 100}, "n must be"),
])
def test_bad_requests_are_400_and_harmless(server, body, message):
    status, text, _ = server.post("/v1/chat/completions", body)
    assert status == 400, text
    assert message in json.loads(text)["error"]["message"]
    assert server.get("/health")[0] == 200


def test_body_limit_and_image_limit():
    s = Server("--max-body-mb", "1", "--max-images", "2")
    try:
        status, text, _ = s.post("/v1/completions", {"prompt": "x" * (2 << 20)})
        assert status == 413, text
        img = base64.b64encode((IMAGES / "exif1_40x24.jpg").read_bytes()).decode()
        status, text, _ = s.post("/v1/completions", {"prompt": "<image>" * 3, "images": [img] * 3})
        assert status == 400 and "at most 2" in text
    finally:
        s.stop()


def test_api_key(tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    s = Server("--api-key-file", str(key))
    try:
        assert s.get("/health")[0] == 200  # no key needed
        assert s.get("/v1/models")[0] == 401
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").models.list()
        assert s.client("s3cret").models.list().data[0].id == "mpt_tiny"
    finally:
        s.stop()


def test_queue_full_is_503_with_retry_after():
    s = Server("--parallel", "1", "--queue", "1")
    try:
        body = {"messages": chat_messages("exif1_40x24.jpg", "An image of"), "max_tokens": 100}
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: s.post("/v1/chat/completions", body), range(8)))
        codes = sorted(r[0] for r in results)
        assert 200 in codes and set(codes) <= {200, 503}, codes
        for status, text, headers in results:
            if status == 503:
                assert headers.get("Retry-After") == "1" and "queue is full" in text
    finally:
        s.stop()


def test_client_disconnect_frees_the_session(server):
    body = json.dumps({"messages": chat_messages("exif1_40x24.jpg", "An image of"), "max_tokens": 110,
                       "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    sock.settimeout(60)
    got = b""
    while b"data:" not in got:  # the headers and the first event may come in separate reads
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the stream: {got!r}"
        got += chunk
    sock.close()
    deadline = time.time() + 20
    while time.time() < deadline:
        metrics = server.get("/metrics")[1]
        if "flamingo_busy_sessions 0" in metrics:
            break
        time.sleep(0.1)
    assert "flamingo_busy_sessions 0" in metrics
    r = server.client().chat.completions.create(model="m", messages=chat_messages("exif1_40x24.jpg", "A"), max_tokens=3)
    assert r.choices[0].message.content == engine_text("<image>A", "exif1_40x24.jpg", 3)


# ---- flamingo-mini: a trained miniature model ----------------------------------------------

MINI = ROOT / "models" / "flamingo-mini"
SHAPES = MINI / "examples"


@pytest.fixture(scope="module")
def mini():
    s = Server("--parallel", "4", "-m", str(MINI))
    yield s
    s.stop()


def user(image, text="Output:"):
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(image)}},
                                        {"type": "text", "text": text}]}


def test_two_shot_caption_equals_the_cli(mini):
    shots = [("red_circle.jpg", "A red circle."), ("blue_squares.jpg", "Two blue squares.")]
    messages = []
    for image, caption in shots:
        messages += [user(SHAPES / image), {"role": "assistant", "content": caption}]
    messages.append(user(SHAPES / "orange_triangle.jpg"))
    r = mini.client().chat.completions.create(model="m", messages=messages, max_tokens=20,
                                              extra_body={"num_beams": 3, "length_penalty": 0.0})
    cli = subprocess.run([CLI, "caption", "-m", str(MINI)] + [f"--shot={SHAPES / i}={c}" for i, c in shots]
                         + [str(SHAPES / "orange_triangle.jpg")], capture_output=True, text=True, check=True).stdout.strip()
    text = r.choices[0].message.content
    assert text.split("Output")[0].replace('"', "").strip() == cli  # flamingo caption's post-processing
    assert r.model_extra["timings"]["images"] == 3


def test_sixteen_clients_each_get_their_own_answer(mini):
    images = sorted((MINI / "eval" / "images").iterdir())[:16]
    shot = [user(SHAPES / "red_circle.jpg"), {"role": "assistant", "content": "A red circle."}]

    def ask(image):
        return mini.client().chat.completions.create(model="m", messages=shot + [user(image)],
                                                     max_tokens=16).choices[0].message.content

    alone = [ask(i) for i in images]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(ask, images))
    assert together == alone
    assert len(set(alone)) > 1  # different images, different captions: nothing mixed up
    hits = float(next(l.split()[1] for l in mini.get("/metrics")[1].splitlines()
                      if l.startswith("flamingo_image_cache_hits_total")))
    assert hits >= 31  # the demonstration image is encoded once


def test_prompt_longer_than_the_context(server):
    status, text, _ = server.post("/v1/completions", {"prompt": "word " * 300})
    e = json.loads(text)["error"]
    assert status == 400 and e["type"] == "exceed_context_size_error"
    assert e["n_ctx"] == 128 and e["n_prompt_tokens"] > 128


def test_sigterm_finishes_in_flight_requests():
    s = Server()
    body = json.dumps({"prompt": "<image>Output:", "max_tokens": 100, "stream": True,
                       "images": [base64.b64encode((IMAGES / "exif1_40x24.jpg").read_bytes()).decode()]})
    curl = subprocess.Popen(["curl", "-sN", "--noproxy", "*", s.url + "/v1/completions", "-d", body],
                            stdout=subprocess.PIPE, text=True)
    first = curl.stdout.readline()
    assert first.startswith("data: ")
    s.proc.terminate()
    rest = curl.stdout.read()
    assert rest.rstrip().endswith("data: [DONE]")  # the stream was completed, not cut
    assert s.proc.wait(timeout=30) == 0

"""Scale-out on Ray (``pip install "./bindings/python[ray]"``; docs/scaling.md).

Batch inference with Ray Data, one model per actor, batched generation inside::

    import ray
    from flamingo.ray import FlamingoPredictor

    ds = ray.data.from_items([{"image": p} for p in paths])      # or ray.data.read_images(...)
    ds = ds.map_batches(FlamingoPredictor, fn_constructor_kwargs={"model_dir": "models/flamingo-mini"},
                        compute=ray.data.ActorPoolStrategy(size=4), batch_size=8)
    ds.take_all()   # each row gains "caption"

Serving with Ray Serve: each replica runs ``flamingo serve`` on loopback and forwards the
OpenAI-compatible requests to it (the same request format, continuous batching inside the
replica)::

    from ray import serve
    from flamingo.ray import FlamingoDeployment
    serve.run(FlamingoDeployment.options(num_replicas=2).bind("models/flamingo-mini"))
    # POST http://127.0.0.1:8000/v1/chat/completions
"""

import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from . import Model, batch_generate, caption_prompt, postprocess_caption, postprocess_vqa, vqa_prompt

__all__ = ["FlamingoPredictor", "FlamingoDeployment", "flamingo_cli"]


class FlamingoPredictor:
    """A callable class for ``Dataset.map_batches``: loads the model once per actor and
    captions (``task="caption"``) or answers (``task="vqa"``, the question in
    ``question_column``) every row's image with OpenFlamingo's prompts, post-processing and,
    by default, its evaluation settings (3 beams, length penalty 0; at most 20 tokens for
    captions, 5 for answers): the result equals ``flamingo caption``/``flamingo vqa`` on the
    same image. ``shots`` are demonstrations: (image, caption) or (image, question, answer).
    Images are what :class:`flamingo.Model` accepts: paths, encoded bytes, uint8 arrays
    (as ``ray.data.read_images`` gives). ``threads``, ``backend`` and ``device_index`` choose
    the compute per actor (e.g. one OpenCL device each)."""

    def __init__(
        self,
        model_dir: str,
        task: str = "caption",
        shots: Sequence[Tuple[Any, ...]] = (),
        max_new_tokens: Optional[int] = None,
        num_beams: int = 3,
        length_penalty: float = 0.0,
        threads: Optional[int] = None,
        backend: str = "cpu",
        device_index: int = -1,
        image_column: str = "image",
        question_column: str = "question",
        output_column: Optional[str] = None,
    ):
        if task not in ("caption", "vqa"):
            raise ValueError(f"task must be caption or vqa, not {task!r}")
        self.model = Model(model_dir, backend, threads, device_index=device_index)
        self.task = task
        self.shots = list(shots)
        self.max_new_tokens = max_new_tokens or (20 if task == "caption" else 5)
        self.options = {"num_beams": num_beams, "length_penalty": length_penalty}
        self.image_column = image_column
        self.question_column = question_column
        self.output_column = output_column or ("caption" if task == "caption" else "answer")

    def _prompt(self, row: int, batch: Dict[str, Any]) -> Tuple[str, List[Any]]:
        images = [s[0] for s in self.shots] + [batch[self.image_column][row]]
        if self.task == "caption":
            return caption_prompt([s[1] for s in self.shots]), images
        question = str(batch[self.question_column][row])
        return vqa_prompt(question, [(s[1], s[2]) for s in self.shots]), images

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        n = len(batch[self.image_column])
        sessions = [self.model.session() for _ in range(n)]
        try:
            for i, s in enumerate(sessions):
                prompt, images = self._prompt(i, batch)
                s.set_prompt(prompt, images, logits=False)
            results = batch_generate(sessions, self.max_new_tokens, **self.options)
        finally:
            for s in sessions:
                s.close()
        post = postprocess_caption if self.task == "caption" else postprocess_vqa
        texts = [post(self.model.detokenize(tokens, skip_special=True)) for tokens, _ in results]
        out = dict(batch)
        out[self.output_column] = _column(texts)
        return out


def _column(values: List[str]) -> Any:
    try:
        import numpy as np

        return np.array(values, dtype=object)
    except ImportError:  # Ray Data brings numpy; plain callers may not have it
        return values


def flamingo_cli() -> str:
    """The ``flamingo`` command the deployment starts: $FLAMINGO_CLI, else on PATH."""
    cli = os.environ.get("FLAMINGO_CLI") or shutil.which("flamingo")
    if not cli:
        raise RuntimeError("the flamingo command was not found: install libflamingo or set FLAMINGO_CLI")
    return cli


class _Replica:
    """One ``flamingo serve`` process on a free loopback port."""

    def __init__(self, model_dir: str, args: Iterable[str]):
        self.proc = subprocess.Popen([flamingo_cli(), "serve", "-m", model_dir, "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        port = None
        for line in self.proc.stdout:
            if "flamingo serve: listening on" in line:
                port = int(line.rsplit(":", 1)[1])
                break
        if port is None:
            raise RuntimeError(f"flamingo serve exited with status {self.proc.wait()}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.url = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.time() + 600
        while self.forward("GET", "/health", None)[0] != 200:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("flamingo serve did not load the model")
            time.sleep(0.1)

    def forward(self, method: str, path: str, body: Optional[bytes], headers: Optional[Dict[str, str]] = None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=600) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("Content-Type", "application/json")
        except OSError as e:
            return 503, f'{{"error": {{"message": "replica unavailable: {e}", "type": "server_error"}}}}'.encode(), \
                "application/json"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


try:
    from ray import serve as _serve
except ImportError:  # Ray is an optional extra
    _serve = None

if _serve is not None:

    @_serve.deployment
    class FlamingoDeployment:
        """A Ray Serve deployment with ``flamingo serve``'s API (docs/server.md): POST
        /v1/chat/completions, /v1/completions (``"stream": true`` answered whole), GET
        /v1/models, /health. ``args`` are extra ``flamingo serve`` flags per replica, e.g.
        ``["--parallel", "8", "--threads", "4"]`` or ``["--backend", "opencl", "--device", "0"]``."""

        def __init__(self, model_dir: str, args: Sequence[str] = ()):
            self.replica = _Replica(model_dir, args)

        async def __call__(self, request):
            import asyncio

            from starlette.responses import Response

            path = request.url.path
            body = await request.body() if request.method == "POST" else None
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
            status, data, ctype = await asyncio.get_running_loop().run_in_executor(
                None, self.replica.forward, request.method, path, body, headers)
            return Response(content=data, status_code=status, media_type=ctype)

        def __del__(self):
            replica = getattr(self, "replica", None)
            if replica is not None:
                replica.close()

else:

    class FlamingoDeployment:  # type: ignore[no-redef]
        def __init__(self, *args, **kwargs):
            raise ImportError('Ray Serve is not installed: pip install "flamingo[ray]"')

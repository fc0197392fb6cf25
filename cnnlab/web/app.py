"""The explorer's web app: a JSON API (its OpenAPI schema at /openapi.json) and the page that uses it.

Every endpoint is a plain `def`: FastAPI runs them on its thread pool, so a slow forward pass never blocks the
event loop, and `Sources` makes the shared models safe to use from several threads.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import threading
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, field_validator

from cnnlab import __version__
from cnnlab.data import dataset_info, load_dataset
from cnnlab.data.folders import is_folder
from cnnlab.data.preprocess import MAX_SCENE_SIDE, fit_scene
from cnnlab.errors import CnnlabError, ConfigError, DatasetError
from cnnlab.tasks import task_of
from cnnlab.viz.activations import normalize_input
from cnnlab.viz.familiarity import Familiarity
from cnnlab.viz.handcrafted import playground_entries
from cnnlab.web import attribution, formulas, inspect, playground
from cnnlab.web.sources import Loaded, Sources, SourceError

MAX_UPLOAD_BYTES = 5 * 2**20  # a phone photo fits; the body is refused before it is read when it is larger
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # room for multipart framing
BODY_TIMEOUT_S = 15  # a client that sends nothing of its body for this long is answered 408 and let go
# Decodes and forward passes run at most this many at once (the cores there are); the rest wait their turn, up to
# BUSY_WAIT_S, then get 503 with Retry-After: memory stays bounded however many requests arrive together.
HEAVY_AT_ONCE = max(1, min(4, os.cpu_count() or 1))
BUSY_WAIT_S = 20
MAX_UPLOAD_PIXELS = 20_000_000  # checked from the header, before the image is decoded
UPLOAD_FORMATS = {"PNG", "JPEG", "GIF", "BMP", "WEBP"}
MAX_CONVOLVE_SIDE = 256
MAX_KERNEL_SIDE = 15
MAX_STRIDE, MAX_PADDING, MAX_DILATION = 8, 8, 8

MAX_IMAGE_SIDE = 256  # of an input sent as numbers (a digit is 28, a scene 64x84, a CIFAR photo 32)
Pixel = Annotated[int, Field(ge=0, le=255)]
Rows = Annotated[list[Annotated[list[Pixel], Field(min_length=1, max_length=MAX_IMAGE_SIDE)]],
                 Field(min_length=1, max_length=MAX_IMAGE_SIDE)]
Digit = Annotated[Rows | Annotated[list[Rows], Field(min_length=1, max_length=3)],
                  Field(description="the model's input, 0-255: rows of pixels (a 28x28 digit, white on black; a "
                                    "scene) or [channel][row][pixel] for a colour run (GET /api/examples shows it)")]


class DigitInput(BaseModel):
    source: str = Field(description="run:<name> or model:<name>, from GET /api/sources")
    digit: Digit


class ActivationsRequest(DigitInput):
    max_maps: int = Field(32, ge=1, le=256, description="feature maps sent per layer (the first ones)")
    layer: str | None = Field(None, description="only this row (a layer opened on the page: up to max_maps maps)")


class ExplainRequest(DigitInput):
    layer: str = Field(description="a Conv2d layer's name, e.g. conv1 or layer1.0.conv2")
    channel: int = Field(ge=0)
    y: int = Field(ge=0)
    x: int = Field(ge=0)


class FormulaRequest(DigitInput):
    layer: str = Field(description="a layer's name as /api/activations lists it, 'softmax', or '<block>.add'")
    index: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=3,
                                                     description="[channel, row, column] of a map, [i] of a vector")


class OcclusionRequest(DigitInput):
    size: int = Field(8, ge=1, le=28, description="side of the square, in pixels")
    stride: int = Field(2, ge=2, le=28, description="pixels between two positions of the square")
    target: int | None = Field(None, ge=0, description="the class whose probability is mapped (default: predicted)")


class ConvolveRequest(BaseModel):
    image: list[list[float]] = Field(description=f"2-D grayscale image, at most {MAX_CONVOLVE_SIDE} a side")
    kernel: list[list[float]] = Field(description=f"2-D kernel, at most {MAX_KERNEL_SIDE} a side")
    padding: Literal["same", "valid"] | Annotated[int, Field(ge=0, le=MAX_PADDING)] = Field(
        "same", description="'same', 'valid' or zero-padding pixels on each side")
    stride: int = Field(1, ge=1, le=MAX_STRIDE)
    dilation: int = Field(1, ge=1, le=MAX_DILATION)

    @field_validator("image", "kernel")
    @classmethod
    def rectangular(cls, rows: list[list[float]], info):
        limit = MAX_CONVOLVE_SIDE if info.field_name == "image" else MAX_KERNEL_SIDE
        if not rows or not rows[0]:
            raise ValueError("must not be empty")
        if any(len(r) != len(rows[0]) for r in rows):
            raise ValueError("rows must all have the same length")
        if len(rows) > limit or len(rows[0]) > limit:
            raise ValueError(f"is {len(rows)}x{len(rows[0])}; at most {limit}x{limit} allowed")
        if not np.isfinite(np.asarray(rows, dtype=np.float64)).all():
            raise ValueError("must hold finite numbers only")
        return rows


def _source_and_image(sources: Sources, body: DigitInput) -> tuple[Loaded, np.ndarray]:
    """The request's source, and its input as uint8 [H, W] (one channel) or [C, H, W] if it is the shape the
    source's model takes."""
    loaded = sources.get(body.source)
    try:
        image = np.asarray(body.digit, dtype=np.uint8)
    except ValueError:
        raise HTTPException(422, "digit: rows must all have the same length") from None
    channels, height, width = loaded.shape
    if image.shape != ((height, width) if channels == 1 else (channels, height, width)):
        wanted = f"{height}x{width}" if channels == 1 else f"{channels}x{height}x{width} ([channel][row][pixel])"
        raise HTTPException(422, f"digit: is {'x'.join(map(str, image.shape))}; {loaded.source} takes {wanted}")
    return loaded, image


def read_upload(upload: UploadFile, loaded: Loaded) -> np.ndarray:
    """The uploaded image as the model's input, or a 4xx naming the problem: a digit prepared as `cnnlab predict`
    prepares it (28x28, centred by mass), a photo as the run's dataset prepared its images, a scene at its own
    scale in the scene canvas."""
    name = upload.filename or "upload"
    data = upload.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"{name}: larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
    try:
        header = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except Image.DecompressionBombError:  # Pillow's own, higher limit, also from the header
        raise HTTPException(413, f"{name}: more than {MAX_UPLOAD_PIXELS:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise HTTPException(415, f"{name}: not an image (expected {', '.join(sorted(UPLOAD_FORMATS))})") from None
    if header.format not in UPLOAD_FORMATS:
        raise HTTPException(415, f"{name}: {header.format} images are not accepted "
                                 f"(expected {', '.join(sorted(UPLOAD_FORMATS))})")
    if header.width * header.height > MAX_UPLOAD_PIXELS:
        raise HTTPException(413, f"{name}: {header.width}x{header.height} is more than {MAX_UPLOAD_PIXELS:,} pixels")
    # a photo of a scene of any size is reduced as it is decoded; the page shows the canvas the model was trained
    # on, so a scene of another size is fitted into it
    image = loaded.task.prepare(data, loaded.info, loaded.shape, name, max_side=MAX_SCENE_SIDE)
    return fit_scene(image, *loaded.shape[1:]) if image.ndim == 2 else image


def familiarity_of(loaded: Loaded) -> Familiarity | None:
    """The thresholds that say whether an upload looks like `loaded`'s training images, set on its test images
    the first time one is asked for (under the model's lock); None where there are no test images."""
    if loaded.familiarity is None and loaded.test_split is not None:
        try:
            images = loaded.test_split().images
        except (ConfigError, DatasetError):
            loaded.test_split = None
            return None
        loaded.familiarity = Familiarity.calibrate(loaded.model, images, loaded.info)
    return loaded.familiarity


def familiar(loaded: Loaded, digit, logits) -> dict:
    """Does the upload look like the images the model was trained on (under the model's lock): "familiar" (null
    where there are no test images to tell) and, if not, "unlike", the reasons."""
    judgement = familiarity_of(loaded).judge(digit, logits) if familiarity_of(loaded) else None
    return {"familiar": judgement.familiar if judgement else None, "unlike": judgement.describe() if judgement else ""}


_heavy = threading.BoundedSemaphore(HEAVY_AT_ONCE)


@contextmanager
def heavy_work():
    """A turn for work that decodes an image or runs a model (the endpoints run in a pool of threads)."""
    if not _heavy.acquire(timeout=BUSY_WAIT_S):
        raise HTTPException(503, f"busy: {HEAVY_AT_ONCE} requests are being computed; try again",
                            headers={"Retry-After": "5"})
    try:
        yield
    finally:
        _heavy.release()


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]]+?)\.?(?::[0-9]*)?", re.IGNORECASE)  # name or [IPv6], port


def host_name(header: str) -> str | None:
    """The name or address of a Host header, lower case, without its port or a trailing dot (None: malformed)."""
    match = _HOST.fullmatch(header)
    return match[1].lower() if match else None


class HostCheck:
    """Answer only requests whose Host header names this server: a page elsewhere whose domain the attacker points
    at 127.0.0.1 (DNS rebinding) is then same-origin with the explorer in the browser's eyes, but its requests carry
    the attacker's name in Host and get 400 before any endpoint runs. `*` among the hosts turns the check off."""

    def __init__(self, app, hosts):
        self.app = app
        self.hosts = {host_name(h) or h.lower() for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or "*" in self.hosts:
            return await self.app(scope, receive, send)
        given = [value.decode("latin-1") for key, value in scope.get("headers") or [] if key == b"host"]
        if len(given) != 1 or host_name(given[0]) not in self.hosts:
            shown = repr(given[0][:60]) if len(given) == 1 else f"{len(given)} Host headers"
            detail = (f"Host {shown}: not a name this explorer answers to ({', '.join(sorted(self.hosts))}); "
                      "start it with --allowed-hosts NAME to add one")
            return await JSONResponse({"detail": detail}, 400)(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse a request body larger than `limit` bytes while it streams in (a chunked body has no
    Content-Length to check first), and a body that stalls for `timeout` seconds: 413 and 408, never a body
    read whole before it is judged."""

    def __init__(self, app, limit: int, timeout: float):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            return await JSONResponse({"detail": self._too_large()}, 413)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the request body stalled for {self.timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> str:
        return f"request body is larger than {MAX_UPLOAD_BYTES // 2**20} MiB"


def create_app(runs: list[str | Path] | None = None, runs_dir: str | Path | None = None, own=(),
               hosts=LOOPBACK_HOSTS, folders=(), body_timeout: float = BODY_TIMEOUT_S) -> FastAPI:
    """The explorer for `runs` (default: every run in `runs_dir`), the registered models, and `own`
    (cnnlab.train.user_model.UserModel: models from the user's files). It answers requests whose Host header is
    one of `hosts` only, and reads the images of a folder dataset only under one of `folders` (or an `own`
    model's): a run folder's config.json is not trusted to name what the server may read. A request whose body
    stops arriving for `body_timeout` seconds is answered 408."""
    sources = Sources(runs, runs_dir, own=own, folders=folders)
    # No /docs or /redoc: their pages load scripts from a CDN, and the explorer works offline.
    app = FastAPI(title="cnnlab explorer", version=__version__, docs_url=None, redoc_url=None,
                  description="Look inside CNNs: predictions, every layer's feature maps, kernels and convolutions.")
    app.state.sources = sources

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES, timeout=body_timeout)
    app.add_middleware(HostCheck, hosts=hosts)  # the last added runs first: a foreign Host reaches nothing

    @app.exception_handler(CnnlabError)
    def user_error(_request, err: CnnlabError):
        status = 404 if isinstance(err, SourceError) else 422
        return JSONResponse({"detail": str(err)}, status)

    @app.get("/api/sources", summary="Runs and registered models the explorer can show")
    def list_sources() -> list[dict]:
        return sources.describe()

    @app.get("/api/examples/{dataset:path}", summary="Test-set images with their labels (a folder dataset: its path)")
    def examples(dataset: str, start: Annotated[int, Query(ge=0)] = 0,
                 count: Annotated[int, Query(ge=1, le=100)] = 12) -> dict:
        # A run knows where its dataset lives (--data-dir) and its options (a folder's side, classes and
        # statistics); the default lookup covers the rest.
        run = next((r for r in sources.runs() if r.config.dataset == dataset), None)
        if is_folder(dataset) and dataset not in sources.datasets():  # no other folder is read
            raise HTTPException(404, f"{dataset}: not the dataset of a run or model shown here (GET /api/sources)")
        if sources.refusal(dataset):
            raise HTTPException(403, sources.refusal(dataset))
        try:
            # a generated dataset (mnist-scenes) makes only the scenes asked for
            generated = dataset_info(dataset).load is not None
            limit = start + count if generated else None
            with heavy_work():
                split = (run.test_split(limit) if run else
                         load_dataset(dataset, "test", download=False, quiet=True, limit=limit))
        except (ConfigError, DatasetError) as err:
            raise HTTPException(404, str(err)) from None
        stop = min(start + count, len(split))
        task = task_of(split.info)
        return {"dataset": dataset, "task": task.name, "classes": list(split.info.classes),
                "total": len(split) if not generated else max(len(split), stop),
                "examples": [{"index": i, "label": task.label_json(split.labels[i]), "digit": split.images[i].tolist()}
                             for i in range(start, stop)]}

    @app.post("/api/predict", summary="Class probabilities for an uploaded image, preprocessed as `cnnlab predict`")
    def predict(image: Annotated[UploadFile, File(description="PNG, JPEG, GIF, BMP or WebP")],
                source: Annotated[str, Form()],
                layers: Annotated[bool, Form(description="also every layer's output, as /api/activations gives "
                                                         "it: a drawing's whole answer in one request")] = False,
                max_maps: Annotated[int, Form(ge=1, le=256)] = 32,
                familiarity: Annotated[bool, Form(description="with layers: also whether the image looks like the "
                                                              "training images (an upload's question, not a "
                                                              "drawing's; always answered without layers)")] = False
                ) -> dict:
        with heavy_work():
            loaded = sources.get(source)
            digit = read_upload(image, loaded)
            task = loaded.task
            if layers:  # the task's answer (probabilities and prediction, a class map, a box) is in it
                answer = inspect.activations(loaded, digit, max_maps)
                if familiarity and task.judges_familiarity:
                    # the thresholds are set on the test images the first time (seconds for a large model): not
                    # for every stroke of a drawing
                    with loaded.lock, torch.inference_mode():
                        output = loaded.model(normalize_input(digit, loaded.info.mean, loaded.info.std))
                        answer.update(familiar(loaded, digit, task.class_scores(output)[0]))
                return {"source": source, "digit": digit.tolist(), **answer}
            with loaded.lock, torch.inference_mode():
                output = task.checked(loaded.model(normalize_input(digit, loaded.info.mean, loaded.info.std)),
                                      source, 1)[0]
                likeness = familiar(loaded, digit, task.class_scores(output[None])[0]) if task.judges_familiarity \
                    else {}
        return {"source": source, "digit": digit.tolist(), "classes": list(loaded.info.classes),
                **task.explorer(output, loaded.info), **likeness}

    @app.post("/api/activations", summary="Every layer's output for one input, and the probabilities or the class map")
    def activations(body: ActivationsRequest) -> dict:
        with heavy_work():
            return inspect.activations(*_source_and_image(sources, body), body.max_maps, body.layer)

    @app.get("/api/kernels", summary="The kernels of a convolution layer (default: the first)")
    def kernels(source: str, layer: str | None = None,
                max_filters: Annotated[int, Query(ge=1, le=512)] = 64) -> dict:
        with heavy_work():
            return inspect.kernels(sources.get(source), layer, max_filters)

    @app.post("/api/explain", summary="The multiply-and-sum behind one output pixel of a convolution")
    def explain(body: ExplainRequest) -> dict:
        with heavy_work():
            return inspect.explain_pixel(*_source_and_image(sources, body), body.layer, body.channel, body.y, body.x)

    @app.post("/api/formula", summary="The formula behind one output value of any layer, with the model's numbers")
    def formula(body: FormulaRequest) -> dict:
        with heavy_work():
            return formulas.explain(*_source_and_image(sources, body), body.layer, body.index)

    @app.post("/api/occlusion", summary="The class probability as a square of the mean pixel hides each place")
    def occlude(body: OcclusionRequest) -> dict:
        with heavy_work():
            return attribution.occlusion_maps(*_source_and_image(sources, body), body.size, body.stride, body.target)

    @app.get("/api/top-activations", summary="A conv feature map's top-9 test images and their deconvnet projections")
    def top_activations(source: str, layer: str, feature: Annotated[int, Query(ge=0)] = 0) -> dict:
        with heavy_work():
            return attribution.top_activations(sources.get(source), layer, feature)

    @app.get("/api/top-activations/progress", summary="How far the search of a layer's top activations is")
    def top_progress(source: str, layer: str) -> dict:
        return attribution.progress(sources.get(source), layer)

    @app.get("/api/filters", summary="The hand-crafted filters of the playground")
    def filters() -> list[dict]:
        return playground_entries()

    @app.post("/api/convolve", summary="Convolve an image with a kernel (cross-correlation, as CNN layers do)")
    def convolve(body: ConvolveRequest) -> dict:
        image, kernel = np.asarray(body.image), np.asarray(body.kernel)
        if body.padding == "same" and body.stride > 1:
            raise HTTPException(422, "padding 'same' needs stride 1 (give the padding in pixels instead)")
        pad = {"same": None, "valid": 0}.get(body.padding, body.padding)
        sides = None
        if pad is not None:
            sides = [playground.arithmetic(n, k, body.stride, pad, body.dilation)
                     for n, k in zip(image.shape, kernel.shape)]
            if not all(side["valid"] for side in sides):
                raise HTTPException(422, next(side["reason"] for side in sides if not side["valid"]))
        with heavy_work():
            out = playground.convolve(image, kernel, body.padding if pad is None else pad, body.stride, body.dilation)
        return {"shape": list(out.shape), "output": out.round(5).tolist(), "arithmetic": sides}

    @app.get("/api/conv-arithmetic", summary="Output size of a convolution along one axis, from the formula")
    def conv_arithmetic(size: Annotated[int, Query(ge=1, le=MAX_CONVOLVE_SIDE)],
                        kernel: Annotated[int, Query(ge=1, le=MAX_KERNEL_SIDE)],
                        stride: Annotated[int, Query(ge=1, le=MAX_STRIDE)] = 1,
                        padding: Annotated[int, Query(ge=0, le=MAX_PADDING)] = 0,
                        dilation: Annotated[int, Query(ge=1, le=MAX_DILATION)] = 1) -> dict:
        return playground.arithmetic(size, kernel, stride, padding, dilation)

    static = resources.files("cnnlab.web") / "static"
    app.mount("/", StaticFiles(directory=str(static), html=True), name="static")
    return app


"""The web app: one page and the JSON API it uses (FastAPI + Uvicorn, extra ``[web]``).

Routes (OpenAPI docs at ``/docs``):

- ``GET /`` the page (static HTML, CSS and JavaScript shipped in the package: no CDN);
- ``GET /api/info`` methods, modes, metric names, limits and examples;
- ``GET /api/examples/{name}/{ir|vis}`` an example's source image (PNG);
- ``POST /api/fuse`` multipart ``ir``, ``vis``, optional ``method`` and ``mode`` -> ``image/png``;
- ``POST /api/evaluate`` multipart ``ir``, ``vis`` and ``fused`` (an image) or ``method`` ->
  the paper's seven metrics (profile ``paper``) as JSON.

Errors are JSON ``{"detail": "<one line>"}``: 400 unreadable image, 413 upload or image too
large, 422 size mismatch or bad option, 503 queue full. Uploads are held in memory (Starlette
spills a part over 1 MB to an anonymous temporary file, deleted when the request ends);
nothing is written anywhere else.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.requests import Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..datasets import get_dataset
from ..errors import InputError
from ..fuse import EXAMPLE_PAIR, MODES, fuse_arrays
from ..io import ImageTooLargeError, decode_image, encode_image, images_by_stem, read_image
from ..methods import DEFAULT_METHOD, GreyFuser, default_weights, get_fuser, is_network, list_methods
from ..metrics.evaluate import evaluate
from ..metrics.profiles import LOWER_IS_BETTER, get_profile
from .settings import DEFAULT_HOST, DEFAULT_PORT, WebSettings

STATIC_DIR = Path(__file__).parent / "static"
PROFILE = "paper"

Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


# ----------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class Example:
    """An example pair the page offers: the bundled MSRS pair, or a pair of a dataset under the data root."""

    name: str
    title: str
    mode: str  #: fuse_arrays mode
    ir_label: str
    vis_label: str
    dataset: str | None  #: None: the pair bundled with the package
    stem: str

    def paths(self, root: str | os.PathLike[str] | None) -> tuple[Path, Path] | None:
        """``(ir, vis)`` files, or None when the data root lacks them."""
        if self.dataset is None:
            return EXAMPLE_PAIR.ir, EXAMPLE_PAIR.vis
        ir_dir, vis_dir = get_dataset(self.dataset).folders(root)
        if not (ir_dir.is_dir() and vis_dir.is_dir()):
            return None
        ir, vis = images_by_stem(ir_dir).get(self.stem), images_by_stem(vis_dir).get(self.stem)
        return (ir, vis) if ir is not None and vis is not None else None


# The MSRS pair ships with the package; TNO and MRI-PET are read from the data root (the
# project never copies its datasets into the repository), so they appear when it is there.
EXAMPLES = (
    Example("msrs_00828N", "MSRS 00828N: night street", "ir-vis", "Infrared", "Visible", None, "00828N"),
    Example("tno_01", "TNO 01: roof against the sky", "ir-vis", "Infrared", "Visible", "tno", "01"),
    Example("mri_pet_11", "MRI-PET 11", "medical", "PET", "MRI", "mri_pet", "11"),
)


# ----------------------------------------------------------------------------- errors
class PairSizeError(InputError):
    """The two uploaded images differ in size."""


def _status(exc: InputError) -> int:
    if isinstance(exc, ImageTooLargeError):
        return 413
    if isinstance(exc, PairSizeError):
        return 422
    return 400


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413 (JSON), from its
    ``Content-Length`` before reading, or while a chunked body arrives, before FastAPI parses
    any of it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"upload over the limit of {self.limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(send)
                return
        state = {"received": 0, "over": False}

        async def limited_receive() -> Any:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if not state["over"]:  # the 413 has been sent: drop the app's own answer
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise


# ----------------------------------------------------------------------------- the shared engine
class Engine:
    """One fuser per method, shared by all requests, and the queue in front of them."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self._fusers: dict[str, GreyFuser] = {}
        self._lock = threading.Lock()
        self.limiter = anyio.CapacityLimiter(settings.workers)
        self.waiting = 0
        self.served = 0

    def methods(self) -> list[str]:
        """The methods offered: networks with weights (shipped, or ``settings.weights`` for
        the default network), then every baseline."""
        out = []
        for name in list_methods():
            if not is_network(name):
                out.append(name)
            elif (name == DEFAULT_METHOD and self.settings.weights is not None) or default_weights(name) is not None:
                out.append(name)
        return out

    def check_method(self, method: str) -> str:
        offered = self.methods()
        if method not in offered:
            raise HTTPException(422, f"unknown method '{method}' (choose from {', '.join(offered)})")
        return method

    def fuser(self, method: str) -> GreyFuser:
        """The shared fuser of ``method``, built on first use (thread-safe)."""
        with self._lock:
            if method not in self._fusers:
                weights = self.settings.weights if method == DEFAULT_METHOD else None
                self._fusers[method] = get_fuser(method, weights=weights, device=self.settings.device)
            return self._fusers[method]

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in a worker thread once a slot is free; 503 when the queue is full."""
        if self.limiter.available_tokens == 0 and self.waiting >= self.settings.max_queue:
            raise HTTPException(
                503, f"server busy: {self.waiting} requests are waiting; try again", headers={"Retry-After": "5"}
            )
        self.waiting += 1
        try:
            await self.limiter.acquire()
        finally:
            self.waiting -= 1
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self.limiter.release()
            self.served += 1


# ----------------------------------------------------------------------------- request work
@dataclass
class Upload:
    """An uploaded file's bytes and how to name it in messages."""

    field: str
    filename: str | None
    data: bytes

    @property
    def name(self) -> str:
        return f"{self.field} ({self.filename})" if self.filename else self.field

    def decode(self, max_pixels: int) -> np.ndarray:
        return decode_image(self.data, self.name, max_pixels=max_pixels)


async def _upload(field: str, file: UploadFile) -> Upload:
    return Upload(field, file.filename, await file.read())


def _read_pair(ir: Upload, vis: Upload, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = ir.decode(max_pixels), vis.decode(max_pixels)
    if a.shape[:2] != b.shape[:2]:
        raise PairSizeError(
            f"size mismatch: {ir.name} is {a.shape[1]}x{a.shape[0]}, {vis.name} is {b.shape[1]}x{b.shape[0]}"
        )
    return a, b


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise HTTPException(422, f"unknown mode '{mode}' (choose from {', '.join(MODES)})")
    return mode


def _metrics_json(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (round(v, 6) if np.isfinite(v) else None) for k, v in values.items()}


# ----------------------------------------------------------------------------- the app
def create_app(settings: WebSettings | None = None) -> FastAPI:
    """The FastAPI application (for Uvicorn or ``fastapi.testclient.TestClient``);
    ``app.state.engine`` is the shared :class:`Engine`."""
    settings = settings or WebSettings()
    engine = Engine(settings)
    metric_names = list(get_profile(PROFILE).resolve(None))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.preload:
            await anyio.to_thread.run_sync(engine.fuser, DEFAULT_METHOD)
        yield

    app = FastAPI(
        title="RefineFuse",
        summary="Infrared-visible and medical image fusion: fuse a pair, compare methods, score them.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.engine = engine

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_status(exc))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/info", summary="Methods, modes, metrics, limits and examples")
    async def info() -> dict[str, Any]:
        return {
            "methods": engine.methods(),
            "default_method": DEFAULT_METHOD,
            "modes": list(MODES),
            "profile": PROFILE,
            "metrics": metric_names,
            "lower_is_better": [m for m in metric_names if m in LOWER_IS_BETTER],
            "limits": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_pixels": settings.max_pixels,
                "workers": settings.workers,
                "max_queue": settings.max_queue,
            },
            "examples": [
                {
                    "name": ex.name,
                    "title": ex.title,
                    "mode": ex.mode,
                    "ir_label": ex.ir_label,
                    "vis_label": ex.vis_label,
                    "available": ex.paths(settings.data_root) is not None,
                }
                for ex in EXAMPLES
            ],
        }

    @app.get(
        "/api/examples/{name}/{role}",
        summary="An example's source image as PNG (role: ir or vis)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def example_image(name: str, role: str) -> Response:
        example = next((ex for ex in EXAMPLES if ex.name == name), None)
        if example is None or role not in ("ir", "vis"):
            raise HTTPException(404, f"no example image '{name}/{role}'")
        paths = example.paths(settings.data_root)
        if paths is None:
            raise HTTPException(404, f"example '{name}' needs the data root ({example.dataset} is not there)")
        png = await anyio.to_thread.run_sync(lambda: encode_image(read_image(paths[0 if role == "ir" else 1])))
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.post(
        "/api/fuse",
        summary="Fuse an image pair; returns the fused image as PNG",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "the fused image"},
            400: {"description": "an unreadable image"},
            413: {"description": "upload or image over the limit"},
            422: {"description": "size mismatch, unknown method or mode"},
            503: {"description": "queue full"},
        },
    )
    async def fuse(
        ir: Annotated[UploadFile, File(description="infrared image (or CT / PET / SPECT)")],
        vis: Annotated[UploadFile, File(description="visible image (or MRI), same size")],
        method: Annotated[str, Form(description="refinefuse or a baseline (see /api/info)")] = DEFAULT_METHOD,
        mode: Annotated[str, Form(description="auto | ir-vis | medical: which source gives the colour")] = "auto",
    ) -> Response:
        engine.check_method(method)
        _check_mode(mode)
        a, b = await _upload("ir", ir), await _upload("vis", vis)

        def work() -> tuple[bytes, float]:
            ir_img, vis_img = _read_pair(a, b, settings.max_pixels)
            fuser = engine.fuser(method)
            t0 = time.perf_counter()
            fused = fuse_arrays(ir_img, vis_img, fuser, mode=mode)
            return encode_image(fused), time.perf_counter() - t0

        png, seconds = await engine.run(work)
        return Response(
            png,
            media_type="image/png",
            headers={
                "Content-Disposition": f'inline; filename="fused_{method}.png"',
                "X-Fusion-Method": method,
                "X-Fusion-Seconds": f"{seconds:.4f}",
            },
        )

    @app.post("/api/evaluate", summary="The paper's seven metrics of a fused image (uploaded, or made by a method)")
    async def evaluate_pair(
        ir: Annotated[UploadFile, File(description="infrared image (or CT / PET / SPECT)")],
        vis: Annotated[UploadFile, File(description="visible image (or MRI), same size")],
        fused: Annotated[UploadFile | None, File(description="the fused image to score; else `method` fuses")] = None,
        method: Annotated[str, Form(description="used when no `fused` image is given")] = DEFAULT_METHOD,
        mode: Annotated[str, Form(description="auto | ir-vis | medical (with `method`)")] = "auto",
    ) -> dict[str, Any]:
        if fused is None:
            engine.check_method(method)
        _check_mode(mode)
        a, b = await _upload("ir", ir), await _upload("vis", vis)
        f = await _upload("fused", fused) if fused is not None else None

        def work() -> dict[str, Any]:
            ir_img, vis_img = _read_pair(a, b, settings.max_pixels)
            if f is not None:
                fused_img = f.decode(settings.max_pixels)
                if fused_img.shape[:2] != ir_img.shape[:2]:
                    raise PairSizeError(
                        f"size mismatch: {f.name} is {fused_img.shape[1]}x{fused_img.shape[0]}, "
                        f"{a.name} is {ir_img.shape[1]}x{ir_img.shape[0]}"
                    )
            else:
                fused_img = fuse_arrays(ir_img, vis_img, engine.fuser(method), mode=mode)
            t0 = time.perf_counter()
            values = evaluate(fused_img, ir_img, vis_img, profile=PROFILE)
            return {
                "method": None if f is not None else method,
                "profile": PROFILE,
                "metrics": _metrics_json(values),
                "lower_is_better": [m for m in values if m in LOWER_IS_BETTER],
                "seconds": round(time.perf_counter() - t0, 4),
            }

        result: dict[str, Any] = await engine.run(work)
        return result

    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    return app


def _version() -> str:
    from .. import __version__

    return str(__version__)


def serve(settings: WebSettings | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the app with Uvicorn until interrupted. With ``settings.preload`` the network is
    loaded before the server listens, so a bad checkpoint or device is an :class:`InputError`
    here, not a failed start-up. Starlette's spilled uploads go to a temporary folder of this
    server, removed when it stops."""
    import uvicorn

    settings = settings or WebSettings()
    app = create_app(dataclasses.replace(settings, preload=False))
    if settings.preload:
        app.state.engine.fuser(DEFAULT_METHOD)
    with tempfile.TemporaryDirectory(prefix="refinefuse-serve-") as tmp:
        saved, tempfile.tempdir = tempfile.tempdir, tmp
        try:
            uvicorn.run(app, host=host, port=port, log_level="info")
        finally:
            tempfile.tempdir = saved

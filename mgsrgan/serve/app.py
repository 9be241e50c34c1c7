"""The ASGI app behind `mgsrgan serve`: the HTTP API (/v1, documented at /docs) and the page (/).

    POST /v1/upscale            one image in, the upscaled image out (or its uncertainty map with ?uncertainty=1)
    POST /v1/jobs               the page's upload: runs every member once, answers 202 with the job's id
    GET  /v1/jobs/{id}          progress: tiles done / total, status
    GET  /v1/jobs/{id}/image    any view (strategy, alpha, adaptive, guided, one member, uncertainty, bicubic) from the cache
    GET  /v1/models             the loaded ensembles (scale, real flag), their strategies and validation scores
    GET  /healthz               liveness and queue depth
    GET  /docs                  the API's Swagger UI, its assets served from the installed swagger-ui-bundle-v2

Every error is JSON {"error": "..."}: 400 for a bad upload or parameter, 404 for an unknown or expired job, 409
for a job not finished, 413 for a body over the byte limit, 422 for a malformed form, 429 (Retry-After) when the
queue is full, 503 while shutting down, 500 with no details (the traceback goes to the server's log only).
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import swagger_ui_bundle
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from mgsrgan.errors import UserError
from mgsrgan.infer.ensemble import STRATEGIES
from mgsrgan.io.checkpoint import Side
from mgsrgan.serve.compose import View, check_view, render, sides_needed
from mgsrgan.serve.images import bicubic, decode_upload, encode, encode_uncertainty, response_format
from mgsrgan.serve.jobs import JobStore, PageJob, QueueFull, ShuttingDown, WorkQueue
from mgsrgan.serve.limits import BodyLimit
from mgsrgan.serve.members import Bank

STATIC = Path(__file__).with_name("static")
DOCS_ASSETS = "/docs-assets"  # Swagger UI's files, from the swagger-ui-bundle-v2 package: /docs works offline
log = logging.getLogger("mgsrgan.serve")
REAL_HELP = ("the real-photo ensemble of this scale (photos from phones and the web: JPEG, noise, blur) instead of "
             "the default one for clean downscaled images; 400 where none is loaded (GET /v1/models: `real`)")


@dataclass(frozen=True)
class ServeLimits:
    """Per-request and whole-server bounds (flags of `mgsrgan serve`; defaults documented in the README)."""

    max_upload_bytes: int = 20 * 2**20  # a 20 MiB upload: a 12 MP JPEG or a 4 MP PNG
    max_pixels: int = 2_000_000  # input pixels (1600 x 1250): x2 output 8 MP
    queue_size: int = 4  # images queued or running; more wait for 429's Retry-After
    max_jobs: int = 8  # the page's images whose member outputs stay cached (LRU)
    cache_bytes: int = 2 * 2**30  # ...and at most this many bytes of them: a 1 MP x2 image's 6 outputs are 144 MB


@dataclass
class Server:
    """What every route reads: the ensembles ((scale, real) -> Bank: real the real-photo ensemble of that scale),
    the limits, the work queue and the page's jobs."""

    banks: dict[tuple[int, bool], Bank]
    limits: ServeLimits
    queue: WorkQueue = field(init=False)
    jobs: JobStore = field(init=False)

    def __post_init__(self) -> None:
        if not self.banks:
            raise ValueError("serve needs at least one ensemble")
        self.queue = WorkQueue(self.limits.queue_size)
        self.jobs = JobStore(self.limits.max_jobs, self.limits.cache_bytes)

    @property
    def default_scale(self) -> int:
        """x2 where loaded, else the smallest."""
        scales = {scale for scale, _ in self.banks}
        return 2 if 2 in scales else min(scales)

    def bank_for(self, scale: int | None, real: bool = False) -> Bank:
        """The bank of `scale` (default_scale when None), the real-photo one when `real`; UserError (a 400) naming
        what is loaded when there is none."""
        scale = self.default_scale if scale is None else scale
        if (scale, real) not in self.banks:
            loaded = ", ".join(f"x{s}{' real' if r else ''}" for s, r in sorted(self.banks))
            asked = f"real=true, scale {scale}: no real-photo ensemble for x{scale}" if real else f"scale {scale}"
            raise UserError(f"{asked}; this server has {loaded}")
        return self.banks[(scale, real)]

    async def read_upload(self, image: UploadFile) -> tuple:
        data = await image.read()
        return await run_in_threadpool(decode_upload, data, image.filename, max_pixels=self.limits.max_pixels)

    def find_job(self, job_id: str) -> PageJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"job {job_id!r} not found (unknown, or dropped from the cache: upload again)")
        return job


def server(request: Request) -> Server:
    """The dependency every route takes: the app's Server."""
    return request.app.state.server


router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=request.app.openapi_url, title="mgsrgan API",
                               swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")


@router.get("/healthz")
def healthz(srv: Server = Depends(server)) -> dict:
    return {"status": "ok", "queue": {"pending": srv.queue.pending, "capacity": srv.queue.capacity}}


@router.get("/v1/models")
def models(srv: Server = Depends(server)) -> dict:
    limits = srv.limits
    return {"default_scale": srv.default_scale, "strategies": list(STRATEGIES),
            "ensembles": [srv.banks[key].describe() for key in sorted(srv.banks)],
            "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                       "queue_size": limits.queue_size}}


@router.post("/v1/upscale", responses={200: {"content": {"image/png": {}}}})
async def upscale(image: UploadFile = File(..., description="the image to upscale"),
                  strategy: str | None = Form(None), alpha: float = Form(0.0), adaptive: float = Form(0.0),
                  guided: float = Form(0.0), checkpoint: str = Form(Side.PIXEL.value),
                  scale: int | None = Form(None), self_ensemble: bool = Form(False), format: str = Form("png"),
                  real: bool = Form(False, description=REAL_HELP),
                  uncertainty: bool = Query(False, description="return the members' disagreement map instead"),
                  srv: Server = Depends(server)) -> Response:
    bank = srv.bank_for(scale, real)
    view = View(kind="uncertainty" if uncertainty else "output", side=checkpoint, strategy=strategy,
                alpha=alpha, adaptive=adaptive, guided=guided)
    check_view(view, bank)
    fmt, media = response_format(format)
    lr_img, info = await srv.read_upload(image)

    def work() -> bytes:
        outputs = bank.run(lr_img, sides_needed(view, bank), self_ensemble=self_ensemble)
        out = render(outputs, bank, view)
        return encode_uncertainty(out, fmt) if uncertainty else encode(out, info, fmt)
    content = await asyncio.wrap_future(srv.queue.submit(work))
    return Response(content, media_type=media)


@router.post("/v1/jobs", status_code=202)
async def create_job(image: UploadFile = File(...), scale: int | None = Form(None),
                     self_ensemble: bool = Form(False), real: bool = Form(False, description=REAL_HELP),
                     srv: Server = Depends(server)) -> dict:
    bank = srv.bank_for(scale, real)
    lr_img, info = await srv.read_upload(image)
    job = PageJob(scale=bank.scale, lr_img=lr_img, info=info, self_ensemble=self_ensemble, real=bank.real)
    srv.queue.submit(lambda: run_job(job, bank, srv.jobs))  # QueueFull -> 429 before the job is stored
    srv.jobs.add(job)
    return job.progress()


def run_job(job: PageJob, bank: Bank, jobs: JobStore) -> None:
    """Every member of every side once on the job's input (the worker thread), the outputs kept as float16."""
    def on_tile(done: int, total: int) -> None:
        job.tiles_done, job.tiles_total = done, total

    job.status = "running"
    try:
        outputs = bank.run(job.lr_img, tuple(bank.sides), self_ensemble=job.self_ensemble, on_tile=on_tile)
        job.outputs = {side: stack.half() for side, stack in outputs.items()}
        job.status = "done"
        jobs.trim()  # the outputs may push older images over the cache budget
    except UserError as err:
        job.status, job.error = "failed", str(err)
    except Exception:  # noqa: BLE001 - the page shows a failure; the traceback goes to the log
        log.exception("job %s failed", job.id)
        job.status, job.error = "failed", "internal error while upscaling (see the server log)"


@router.get("/v1/jobs/{job_id}")
def job_progress(job_id: str, srv: Server = Depends(server)) -> dict:
    return srv.find_job(job_id).progress()


@router.get("/v1/jobs/{job_id}/image", responses={200: {"content": {"image/png": {}}}})
async def job_image(job_id: str, kind: str = "output", checkpoint: str = Side.PIXEL.value, strategy: str | None = None,
                    alpha: float = 0.0, adaptive: float = 0.0, guided: float = 0.0, member: int = 0,
                    format: str = "png", srv: Server = Depends(server)) -> Response:
    job = srv.find_job(job_id)
    bank = srv.banks[(job.scale, job.real)]
    view = View(kind=kind, side=checkpoint, strategy=strategy, alpha=alpha, adaptive=adaptive, guided=guided,
                member=member)
    check_view(view, bank)
    fmt, media = response_format(format)
    if kind == "bicubic":
        content = await run_in_threadpool(lambda: encode(bicubic(job.lr_img, job.scale), job.info, fmt))
        return Response(content, media_type=media)
    if job.status != "done":
        raise HTTPException(409, f"job {job_id!r} is {job.status}" + (f": {job.error}" if job.error else ""))

    def work() -> bytes:
        outputs = {side: stack.float() for side, stack in job.outputs.items()}
        out = render(outputs, bank, view)
        return encode_uncertainty(out, fmt) if kind == "uncertainty" else encode(out, job.info, fmt)
    return Response(await run_in_threadpool(work), media_type=media,
                    headers={"Cache-Control": "private, max-age=3600"})


def create_app(banks: Sequence[Bank], limits: ServeLimits = ServeLimits()) -> FastAPI:
    """The app for these ensembles (one per (scale, real)); the default scale is x2 where loaded, else the
    smallest."""
    keyed = {bank.key: bank for bank in banks}
    if len(keyed) != len(banks):
        raise ValueError("two ensembles with the same scale and real flag")
    srv = Server(keyed, limits)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        srv.queue.close()

    app = FastAPI(title="mgsrgan", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Multi-generator SRGAN super-resolution: upscale images, see where the members "
                              "disagree, move along the perception-distortion curve.")
    app.state.server = srv
    app.state.queue, app.state.jobs = srv.queue, srv.jobs
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    app.include_router(router)
    install_error_handlers(app)
    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every error as JSON {"error": message}; never a traceback in a response."""

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(QueueFull)
    async def busy(_: Request, exc: QueueFull) -> JSONResponse:
        return error(429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(ShuttingDown)
    async def stopping(_: Request, exc: ShuttingDown) -> JSONResponse:
        return error(503, str(exc), {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return error(500, "internal server error (see the server log)")

"""The server's bounded work queue and its store of finished images.

CPU inference takes seconds per image and uses every core, so one worker thread runs the networks, one image at a
time, and at most `capacity` images wait or run. Beyond that a request is refused at once (429 with Retry-After)
instead of piling up: memory and latency stay bounded under any load.
"""
from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from mgsrgan.io.images import ImageInfo

FIRST_ESTIMATE_S = 2.0  # seconds per job assumed before one has finished (Retry-After's first guess)


class QueueFull(Exception):
    """Every slot is taken; `retry_after` (whole seconds) estimates when one frees."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy ({retry_after} s until a slot is expected to free); retry later")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The queue no longer accepts work (the server is stopping)."""


class WorkQueue:
    """At most `capacity` jobs queued or running; one worker thread runs them in order."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mgsrgan-infer")
        self._lock = threading.Lock()
        self._pending = 0
        self._mean_s = FIRST_ESTIMATE_S
        self._closed = False

    @property
    def pending(self) -> int:
        return self._pending

    def retry_after(self) -> int:
        """Seconds until a slot is expected to free: the mean job time, at least 1."""
        return max(1, math.ceil(self._mean_s))

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Queue `fn`; QueueFull when `capacity` jobs are already queued or running, ShuttingDown after close."""
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            if self._pending >= self.capacity:
                raise QueueFull(self.retry_after())
            self._pending += 1

        def timed() -> Any:
            start = time.perf_counter()
            try:
                return fn()
            finally:
                with self._lock:  # an exponential average: recent images say most about the next wait
                    self._mean_s = 0.7 * self._mean_s + 0.3 * (time.perf_counter() - start)
        future = self._executor.submit(timed)
        future.add_done_callback(lambda _: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class PageJob:
    """One uploaded image of the page: its input, progress and, once done, every member's output."""

    scale: int
    lr_img: torch.Tensor  # (3, h, w) float32 in [0, 1]
    info: ImageInfo
    self_ensemble: bool
    real: bool = False  # the real-photo ensemble of `scale` ran on it
    id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    status: str = "queued"  # queued | running | done | failed
    tiles_done: int = 0
    tiles_total: int = 0
    error: str | None = None
    outputs: dict[str, torch.Tensor] | None = None  # side -> (K, 3, H, W) float16: half the memory, far under an 8-bit level

    def nbytes(self) -> int:
        """Bytes of tensors this job holds (input and cached member outputs)."""
        outputs = self.outputs or {}
        return self.lr_img.nbytes + sum(t.nbytes for t in outputs.values())

    def progress(self) -> dict:
        height, width = self.lr_img.shape[-2:]
        return {"id": self.id, "status": self.status, "tiles_done": self.tiles_done, "tiles_total": self.tiles_total,
                "error": self.error, "scale": self.scale, "real": self.real, "input_size": [width, height],
                "output_size": [width * self.scale, height * self.scale]}


class JobStore:
    """The last `capacity` jobs by id, within `max_bytes` of cached tensors: adding a job, or a job's outputs
    arriving, drops the oldest others (the page then says: upload again). The newest job always stays."""

    def __init__(self, capacity: int, max_bytes: int = 2**62) -> None:
        if capacity < 1 or max_bytes < 1:
            raise ValueError(f"job store capacity and bytes must be >= 1, got {capacity}, {max_bytes}")
        self.capacity, self.max_bytes = capacity, max_bytes
        self._jobs: OrderedDict[str, PageJob] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, job: PageJob) -> None:
        with self._lock:
            self._jobs[job.id] = job
        self.trim()

    def trim(self) -> None:
        """Drop the oldest jobs until at most `capacity` remain and their tensors fit in `max_bytes`."""
        with self._lock:
            while len(self._jobs) > 1 and (len(self._jobs) > self.capacity or self.nbytes() > self.max_bytes):
                self._jobs.popitem(last=False)

    def nbytes(self) -> int:
        return sum(job.nbytes() for job in self._jobs.values())

    def get(self, job_id: str) -> PageJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def __len__(self) -> int:
        return len(self._jobs)

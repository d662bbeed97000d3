"""Settings of the web app: limits, methods and where the examples come from (no FastAPI import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"  # localhost only unless the user asks otherwise
DEFAULT_PORT = 8000


@dataclass
class WebSettings:
    """What ``refinefuse serve`` accepts and how it shares the machine.

    Uploads are checked before any work: a request body over ``max_upload_bytes`` is refused
    (413) while it arrives, an image over ``max_pixels`` is refused from its header (413).
    Fusion and scoring run one request at a time per ``workers`` slot on a shared model
    instance (each request already uses every core); up to ``max_queue`` further requests
    wait their turn and any beyond get 503, so a burst queues instead of exhausting memory.
    """

    weights: str | os.PathLike[str] | None = None  #: checkpoint of the network (default: shipped)
    device: str = "auto"  #: torch device of the network (``auto``: CUDA if available)
    data_root: str | os.PathLike[str] | None = None  #: where the TNO and MRI-PET examples are read
    max_upload_bytes: int = 32 * 1024 * 1024  #: per request (both images and the form)
    max_pixels: int = 4096 * 4096 // 2  #: per image (8.4 Mpixel, e.g. 4096x2048)
    workers: int = 1  #: requests computed at once
    max_queue: int = 32  #: requests allowed to wait for a worker; more get 503
    preload: bool = True  #: load the network when the app starts instead of on the first request

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if int(self.max_queue) < 0:
            raise ValueError(f"max_queue must be at least 0, got {self.max_queue}")
        if self.weights is not None:
            self.weights = Path(self.weights)

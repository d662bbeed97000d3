"""Where the shared, read-only data lives (never copied into the repository).

The data root is ``$REFINEFUSE_DATA_ROOT`` when set, else ``../shared`` relative to the
current directory (the layout of a checkout beside ``shared/``).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_ROOT = "REFINEFUSE_DATA_ROOT"
ENV_CACHE = "REFINEFUSE_CACHE"


def data_root(override: str | os.PathLike[str] | None = None) -> Path:
    """Return the shared data root: ``override``, else the env variable, else ``../shared``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(ENV_DATA_ROOT)
    return Path(env) if env else Path("..") / "shared"


def dataset_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Folder of a named dataset under ``<root>/data`` (e.g. ``msrs/test``, ``tno``)."""
    return data_root(root) / "data" / name


def cache_dir() -> Path:
    """Where derived files (ONNX exports of checkpoints) are cached: ``$REFINEFUSE_CACHE``,
    else ``$XDG_CACHE_HOME/refinefuse``, else ``~/.cache/refinefuse``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "refinefuse"

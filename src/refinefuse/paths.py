"""Where the shared, read-only data lives (never copied into the repository).

The data root is ``$REFINEFUSE_DATA_ROOT`` when set, else ``../shared`` relative to the
current directory (the layout of a checkout beside ``shared/``).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_ROOT = "REFINEFUSE_DATA_ROOT"


def data_root(override: str | os.PathLike | None = None) -> Path:
    """Return the shared data root: ``override``, else the env variable, else ``../shared``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(ENV_DATA_ROOT)
    return Path(env) if env else Path("..") / "shared"


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of a named dataset under ``<root>/data`` (e.g. ``msrs/test``, ``tno``)."""
    return data_root(root) / "data" / name

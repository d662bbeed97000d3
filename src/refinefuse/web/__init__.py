"""A local web app for comparing fusion methods (``refinefuse serve``; extra ``[web]``).

:func:`create_app` builds the FastAPI application (page + JSON API), :func:`serve` runs it
with Uvicorn, bound to ``127.0.0.1`` by default. See :mod:`refinefuse.web.app`.
"""

from __future__ import annotations

from typing import Any

from .settings import DEFAULT_HOST, DEFAULT_PORT, WebSettings

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "WebSettings", "create_app", "serve"]


def create_app(settings: WebSettings | None = None) -> Any:
    """The FastAPI application (imported lazily: FastAPI is an optional extra)."""
    from .app import create_app as _create

    return _create(settings)


def serve(settings: WebSettings | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the app with Uvicorn until interrupted."""
    from .app import serve as _serve

    _serve(settings, host=host, port=port)

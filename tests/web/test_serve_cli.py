"""``refinefuse serve``: bad options are one line and exit 2 before any server starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from web_helpers import require_web

from refinefuse.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "--port must be between 1 and 65535, got 0"),
        (["--max-queue", "-1"], "max_queue must be at least 0, got -1"),
        (["--max-pixels", "0"], "max_pixels must be at least 1, got 0"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--weights", "missing.pt"], "missing.pt"),
    ],
)
def test_bad_options_are_one_line(args: list[str], message: str, capsys, tmp_path: Path, monkeypatch) -> None:
    require_web()
    monkeypatch.chdir(tmp_path)
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("refinefuse: error:") and message in err


def test_settings_reject_nonsense() -> None:
    from refinefuse.web.settings import WebSettings

    with pytest.raises(ValueError, match="workers must be at least 1"):
        WebSettings(workers=0)
    assert WebSettings().max_upload_bytes == 32 * 2**20


def test_serve_spills_uploads_into_its_own_temporary_folder(monkeypatch) -> None:
    """While serving, Python's temporary files (Starlette's spilled uploads) go to a folder of
    the server's own, removed when it stops; binding defaults to localhost."""
    require_web()
    import os
    import tempfile

    import uvicorn

    from refinefuse.web import WebSettings, serve

    seen = {}

    def fake_run(app, host, port, log_level):  # noqa: ANN001
        seen.update(host=host, port=port, tmp=Path(tempfile.gettempdir()))
        assert seen["tmp"].name.startswith("refinefuse-serve-") and seen["tmp"].is_dir()
        with tempfile.SpooledTemporaryFile(max_size=1) as spilled:  # as Starlette does for a large part
            spilled.write(b"upload bytes")
            spilled.rollover()
            where = Path(os.readlink(f"/proc/self/fd/{spilled.fileno()}")) if Path("/proc/self/fd").is_dir() else None
            assert where is None or where.parent == seen["tmp"]  # an anonymous file in the server's folder

    before = tempfile.gettempdir()
    monkeypatch.setattr(uvicorn, "run", fake_run)
    serve(WebSettings(preload=False))
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert not seen["tmp"].exists() and tempfile.gettempdir() == before

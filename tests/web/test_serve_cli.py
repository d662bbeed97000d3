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

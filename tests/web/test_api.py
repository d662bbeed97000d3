"""The JSON API of ``refinefuse serve`` through FastAPI's test client: results and every error case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from web_helpers import require_web

from refinefuse.io import decode_image, encode_image


@pytest.fixture(scope="module")
def client(shared_root: Path):
    require_web()
    from fastapi.testclient import TestClient

    from refinefuse.web import WebSettings, create_app

    app = create_app(WebSettings(data_root=shared_root, max_upload_bytes=3 * 2**20, max_pixels=1024 * 768))
    with TestClient(app) as c:
        yield c


def _png(img: np.ndarray) -> bytes:
    return encode_image(img)


def _files(ir: bytes, vis: bytes, **extra: bytes) -> dict:
    files = {"ir": ("ir.png", ir, "image/png"), "vis": ("vis.png", vis, "image/png")}
    files.update({k: (f"{k}.png", v, "image/png") for k, v in extra.items()})
    return files


def test_info_lists_methods_metrics_and_examples(client) -> None:
    info = client.get("/api/info").json()
    assert info["methods"][0] == "refinefuse" and {"max", "mean"} <= set(info["methods"])
    # variants without shipped weights are not offered
    assert "refinefuse_l3" not in info["methods"]
    assert info["metrics"] == ["VIF", "AG", "SCD", "Qabf", "SF", "EN", "SSIM"]
    assert [e["name"] for e in info["examples"]] == ["msrs_00828N", "tno_01", "mri_pet_11"]
    assert all(e["available"] for e in info["examples"])


def test_fuse_returns_the_same_png_as_the_python_api(client, msrs_pair) -> None:
    from refinefuse.fuse import fuse_arrays
    from refinefuse.methods import get_fuser

    ir_b, vis_b = msrs_pair
    for method in ("refinefuse", "max"):
        r = client.post("/api/fuse", files=_files(ir_b, vis_b), data={"method": method})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert r.headers["x-fusion-method"] == method
        got = decode_image(r.content, "response")
        want = fuse_arrays(decode_image(ir_b, "ir"), decode_image(vis_b, "vis"), get_fuser(method))
        assert got.shape == want.shape == (480, 640, 3)  # colour visible -> colour output
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_evaluate_scores_an_uploaded_fused_image_and_a_method(client, msrs_pair) -> None:
    from refinefuse.metrics import evaluate

    ir_b, vis_b = msrs_pair
    fused_b = client.post("/api/fuse", files=_files(ir_b, vis_b), data={"method": "max"}).content
    r = client.post("/api/evaluate", files=_files(ir_b, vis_b, fused=fused_b))
    assert r.status_code == 200, r.text
    body = r.json()
    want = evaluate(decode_image(fused_b, "f"), decode_image(ir_b, "ir"), decode_image(vis_b, "vis"))
    assert list(body["metrics"]) == list(want)
    for k, v in want.items():
        assert body["metrics"][k] == pytest.approx(v, abs=1e-5)
    by_method = client.post("/api/evaluate", files=_files(ir_b, vis_b), data={"method": "max"}).json()
    assert by_method["method"] == "max"
    assert by_method["metrics"] == pytest.approx(body["metrics"], abs=1e-5)


def test_examples_are_served_as_png(client, data_dir: Path) -> None:
    from refinefuse.io import read_image

    r = client.get("/api/examples/mri_pet_11/ir")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    want = read_image(data_dir / "medical" / "MRI_PET" / "PET" / "11.png")
    assert np.array_equal(decode_image(r.content, "example"), want)
    assert client.get("/api/examples/msrs_00828N/vis").status_code == 200
    assert client.get("/api/examples/nope/ir").status_code == 404
    assert client.get("/api/examples/tno_01/fused").status_code == 404


def test_page_and_openapi_are_served_without_external_resources(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text, asset  # no CDN, no web fonts
    assert "https://" not in page.text and "http://" not in page.text
    spec = client.get("/openapi.json").json()
    assert {"/api/fuse", "/api/evaluate", "/api/info"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


# ----------------------------------------------------------------------------- errors
def _detail(r) -> str:
    body = r.json()
    assert isinstance(body, dict) and "detail" in body
    return str(body["detail"])


def test_unreadable_image_is_400_naming_the_field(client, msrs_pair) -> None:
    r = client.post("/api/fuse", files=_files(b"not an image", msrs_pair[1]))
    assert r.status_code == 400
    assert _detail(r) == "ir (ir.png): not a readable image"
    truncated = msrs_pair[1][: len(msrs_pair[1]) // 3]
    r = client.post("/api/evaluate", files=_files(msrs_pair[0], truncated))
    assert r.status_code == 400 and _detail(r).startswith("vis (vis.png):")


def test_size_mismatch_is_422(client, msrs_pair) -> None:
    small = _png(np.zeros((100, 120), np.uint8))
    r = client.post("/api/fuse", files=_files(msrs_pair[0], small))
    assert r.status_code == 422
    assert _detail(r) == "size mismatch: ir (ir.png) is 640x480, vis (vis.png) is 120x100"
    r = client.post("/api/evaluate", files=_files(msrs_pair[0], msrs_pair[1], fused=small))
    assert r.status_code == 422 and "fused (fused.png) is 120x100" in _detail(r)


def test_upload_over_the_limit_is_413_before_parsing(client) -> None:
    big = b"\0" * (3 * 2**20 + 1)
    r = client.post("/api/fuse", files=_files(big, b"x"))
    assert r.status_code == 413 and "upload over the limit" in _detail(r)


def test_chunked_upload_over_the_limit_is_413(client) -> None:
    """No Content-Length (a streamed body): refused while it arrives."""

    def body():
        for _ in range(4):
            yield b"\0" * 2**20

    r = client.post("/api/fuse", content=body(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and "upload over the limit" in _detail(r)


def test_image_over_the_pixel_limit_is_413_from_its_header(client) -> None:
    # 4000x3000 black PNG: a few kB on the wire, 12 Mpixel once decoded (limit: 1024x768)
    huge = _png(np.zeros((3000, 4000), np.uint8))
    assert len(huge) < 3 * 2**20
    r = client.post("/api/fuse", files=_files(huge, huge))
    assert r.status_code == 413
    assert _detail(r) == "ir (ir.png): 4000x3000 is over the limit of 786432 pixels"


def test_unknown_method_mode_and_missing_field_are_422(client, msrs_pair) -> None:
    r = client.post("/api/fuse", files=_files(*msrs_pair), data={"method": "refinefuse_l3"})
    assert r.status_code == 422 and "unknown method 'refinefuse_l3'" in _detail(r)
    r = client.post("/api/fuse", files=_files(*msrs_pair), data={"mode": "xray"})
    assert r.status_code == 422 and "unknown mode 'xray'" in _detail(r)
    r = client.post("/api/fuse", files={"ir": ("ir.png", msrs_pair[0], "image/png")})
    assert r.status_code == 422  # FastAPI's validation error: vis is required


def test_full_queue_is_503(shared_root: Path, msrs_pair) -> None:
    """With no worker free and no queue, a request is refused instead of piling up."""
    require_web()
    from fastapi.testclient import TestClient

    from refinefuse.web import WebSettings, create_app

    app = create_app(WebSettings(data_root=shared_root, max_queue=0, preload=False))
    engine = app.state.engine
    with TestClient(app) as c:
        holder = object()
        c.portal.call(engine.limiter.acquire_on_behalf_of, holder)  # occupy the only worker
        try:
            r = c.post("/api/fuse", files=_files(*msrs_pair), data={"method": "max"})
            assert r.status_code == 503 and "server busy" in _detail(r)
            assert r.headers["retry-after"] == "5"
        finally:
            c.portal.call(engine.limiter.release_on_behalf_of, holder)
        assert c.post("/api/fuse", files=_files(*msrs_pair), data={"method": "max"}).status_code == 200

"""The one colour-conversion path: RGB <-> YCbCr (BT.601 full range, as OpenCV's YCrCb).

Float arrays are in [0, 1]; uint8 input is scaled by 1/255. Fusion networks and baselines
see only the luminance; chroma comes back unchanged (paper Sect. 4.1, docs/design.md Sect. 2).
"""

from __future__ import annotations

import cv2
import numpy as np


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [0, 1] (float input is returned as float32)."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return img.astype(np.float32, copy=False)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 with rounding and clipping."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def rgb_to_ycrcb(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ``(H, W, 3)`` RGB into luminance ``Y (H, W)`` and chroma ``CrCb (H, W, 2)``, float32 [0, 1]."""
    ycrcb = cv2.cvtColor(to_float(rgb), cv2.COLOR_RGB2YCrCb)
    return np.ascontiguousarray(ycrcb[:, :, 0]), np.ascontiguousarray(ycrcb[:, :, 1:])


def ycrcb_to_rgb(y: np.ndarray, crcb: np.ndarray) -> np.ndarray:
    """Recombine ``Y (H, W)`` with ``CrCb (H, W, 2)`` into RGB float32, clipped to [0, 1]."""
    ycrcb = np.dstack([y.astype(np.float32), crcb.astype(np.float32)])
    return np.clip(cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB), 0.0, 1.0)


def luminance(img: np.ndarray) -> np.ndarray:
    """Fusion input of one image: float32 [0, 1] ``(H, W)``; the Y channel of a colour image."""
    return to_float(img) if img.ndim == 2 else rgb_to_ycrcb(img)[0]


def grey_255(img: np.ndarray) -> np.ndarray:
    """Metric input: float64 grey 0-255, exactly like the reference evaluators
    (``cv2.cvtColor(BGR2GRAY)`` on float32, then rounded)."""
    f: np.ndarray = img.astype(np.float32)
    if f.ndim == 3:
        f = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    return np.round(f).astype(np.float64)

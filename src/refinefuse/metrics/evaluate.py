"""Scoring fused images: one triplet (:func:`evaluate`) or whole folders (:func:`evaluate_folders`).

Images are converted to grey exactly like the reference evaluators
(:func:`refinefuse.colour.grey_255`: OpenCV's BGR2GRAY on float, rounded), so colour
fused images and colour sources (visible, PET, SPECT) are accepted.
"""

from __future__ import annotations

import math
import multiprocessing
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..colour import grey_255
from ..errors import InputError
from ..io import available_cpus, images_by_stem, pair_folders, read_image
from .profiles import Profile, get_profile


def as_grey(img: np.ndarray) -> np.ndarray:
    """Metric input from any image: uint8 or colour -> ``grey_255``; a 2-D float array is
    taken as grey 0-255 values and returned as float64 unchanged."""
    img = np.asarray(img)
    if img.ndim == 2 and np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float64, copy=False)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2 and img.dtype == np.uint8:
        return img.astype(np.float64)  # what grey_255 gives for grey uint8, without its float32 round trip
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"expected a (H, W) grey or (H, W, 3) RGB image, got shape {img.shape}")
    return grey_255(img)


def evaluate(
    fused: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    metrics: str | Sequence[str] | None = None,
    profile: str | Profile = "paper",
) -> dict[str, float]:
    """Metrics of one fused image against its two sources.

    Args:
        fused, a, b: grey float 0-255 ``(H, W)`` arrays, or any image ``read_image``
            returns (uint8 grey or RGB), converted with :func:`as_grey`. ``a`` is the
            infrared / CT / PET / SPECT image, ``b`` the visible / MRI image.
        metrics: names (list or comma-separated string); ``None`` = the profile's default
            (``paper``: VIF, AG, SCD, Qabf, SF, EN, SSIM).
        profile: ``paper`` (default), ``cddfuse`` or ``tang``.

    Returns:
        ``{metric: value}`` in the requested order.
    """
    prof = get_profile(profile)
    names = prof.resolve(metrics)
    f, a, b = as_grey(fused), as_grey(a), as_grey(b)
    if not f.shape == a.shape == b.shape:
        raise ValueError(f"image sizes differ: fused {f.shape}, a {a.shape}, b {b.shape}")
    return {name: float(prof.metrics[name](f, a, b)) for name in names}


# ----------------------------------------------------------------------------- folders
class MetricWarning(UserWarning):
    """Issued by :func:`evaluate_folders` for scores left out of a mean (NaN or infinite)
    and for degenerate (constant) images; one line naming the images."""


#: Names listed in a warning before "and N more".
MAX_NAMES_SHOWN = 5


def name_list(names: Sequence[str], limit: int = MAX_NAMES_SHOWN) -> str:
    """``"a, b, c, d, e and 3 more"``: at most ``limit`` names, then how many are left out."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass
class EvalResults:
    """Per-image scores of one or more methods on the same source pairs.

    ``scores[method][image] = {metric: value}`` holds every value as the metric returned it
    (NaN and infinities included); ``skipped[method]`` lists the pairs that had no fused
    image (only with ``skip_missing``); ``flat_fused[method]`` the images where the fused
    image is constant; ``flat_sources[image]`` which sources (``"ir"``, ``"vis"``) of that
    pair are constant. :meth:`means` averages the finite values only and :meth:`counts`
    says how many there were; :meth:`issues` describes what was left out or degenerate.
    """

    profile: str
    metrics: tuple[str, ...]
    methods: tuple[str, ...]
    scores: dict[str, dict[str, dict[str, float]]]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    flat_fused: dict[str, list[str]] = field(default_factory=dict)
    flat_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def means(self) -> dict[str, dict[str, float]]:
        """``{method: {metric: mean over the images where it is finite}}``; NaN where no
        image gave a finite value. :meth:`counts` gives the number of values behind each mean."""
        out = {}
        for method in self.methods:
            per_image = self.scores[method].values()
            out[method] = {m: _finite_mean([s[m] for s in per_image]) for m in self.metrics}
        return out

    def counts(self) -> dict[str, dict[str, tuple[int, int]]]:
        """``{method: {metric: (n_finite, n_images)}}``: images with a finite value of the
        metric (those in its mean), and images scored."""
        return {
            method: {
                m: (sum(math.isfinite(s[m]) for s in self.scores[method].values()), len(self.scores[method]))
                for m in self.metrics
            }
            for method in self.methods
        }

    def non_finite(self) -> dict[str, dict[str, list[str]]]:
        """``{method: {metric: [image, ...]}}``: images whose value is NaN or infinite (only
        metrics that have some)."""
        out: dict[str, dict[str, list[str]]] = {}
        for method in self.methods:
            for m in self.metrics:
                images = [image for image, values in self.scores[method].items() if not math.isfinite(values[m])]
                if images:
                    out.setdefault(method, {})[m] = images
        return out

    def issues(self) -> list[str]:
        """One line per problem: per method and metric the images left out of the mean
        (NaN / infinite values), per method the constant fused images, and the pairs with
        a constant source image. Empty when every value is finite and no image is flat."""
        lines = []
        if self.flat_sources:
            pairs = [f"{name} ({'+'.join(which)})" for name, which in self.flat_sources.items()]
            lines.append(
                f"constant source image in {len(pairs)} pair(s): {name_list(pairs)}; VIF counts 1.0 for a "
                "constant source whatever the fused image (the reference's NaN -> 1.0), SCD and CC are NaN"
            )
        bad = self.non_finite()
        for method in self.methods:
            n = len(self.scores[method])
            flat = self.flat_fused.get(method, [])
            if flat:
                lines.append(
                    f"{method}: the fused image is constant in {len(flat)} of {n} image(s): {name_list(flat)}; "
                    "degenerate scores (e.g. VIF 0 and CC NaN; with constant sources VIF and SSIM reach 2.0)"
                )
            for m, images in bad.get(method, {}).items():
                values = self.scores[method]
                shown = [f"{i} ({values[i][m]})" for i in images]
                lines.append(
                    f"{method}: {m} is not finite in {len(images)} of {n} image(s): {name_list(shown)}; "
                    f"the mean is over the other {n - len(images)}"
                )
        return lines

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _is_flat(img: np.ndarray) -> bool:
    return bool(img.min() == img.max())


def parse_method_dirs(values: Sequence[str]) -> dict[str, Path]:
    """``["DIR", "NAME=DIR", ...]`` -> ``{name: folder}`` (the CLI's ``--fused`` values).

    Without ``NAME=`` the row is named after the folder. A value that is an existing path
    is always a folder, even if it contains ``=``. Duplicate names raise :class:`InputError`.
    """
    out: dict[str, Path] = {}
    for value in values:
        name, sep, folder_name = value.partition("=")
        if not sep or not name or Path(value).exists():
            name, folder_name = Path(value).resolve().name or value, value
        folder = Path(folder_name)
        if not folder.is_dir():
            raise InputError(f"{folder}: no such folder (fused images of '{name}')")
        if name in out:
            raise InputError(f"{folder}: a second method named '{name}' (use NAME=DIR to name the rows)")
        out[name] = folder
    return out


def _size(img: np.ndarray) -> str:
    return f"{img.shape[1]}x{img.shape[0]}"


def _score_pair(
    task: tuple[str, Path, Path, list[tuple[str, Path]]], prof: Profile, metrics: tuple[str, ...]
) -> tuple[str, dict[str, dict[str, float]], list[str], tuple[str, ...]]:
    """Worker: read one source pair once and score every method's fused image of it.

    Returns the pair name, ``{method: {metric: value}}``, the methods whose fused image
    is constant and the constant sources (``"ir"``, ``"vis"``)."""
    name, ir_path, vis_path, fused = task
    a = as_grey(read_image(ir_path))
    b = as_grey(read_image(vis_path))
    if a.shape != b.shape:
        raise InputError(f"{vis_path}: size {_size(b)} differs from {ir_path} ({_size(a)})")
    out = {}
    flat_methods = []
    for method, path in fused:
        f = as_grey(read_image(path))
        if f.shape != a.shape:
            raise InputError(f"{path}: size {_size(f)} differs from its sources {ir_path} ({_size(a)})")
        try:
            out[method] = {m: float(prof.metrics[m](f, a, b)) for m in metrics}
        except ValueError as exc:  # e.g. an image too small for VIF
            raise InputError(f"{path}: {exc}") from None
        if _is_flat(f):
            flat_methods.append(method)
    flat_sources = tuple(label for label, img in (("ir", a), ("vis", b)) if _is_flat(img))
    return name, out, flat_methods, flat_sources


def _init_worker() -> None:
    """Set up a worker process: single-threaded libraries (one process per core), and
    glibc malloc told to keep freed memory, so the many image-sized temporaries reuse
    pages instead of page-faulting fresh ones (about 10% faster)."""
    import ctypes

    import cv2

    cv2.setNumThreads(1)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: only slower
        pass


def default_workers() -> int:
    """Worker processes to use: the CPUs this process may run on."""
    return available_cpus()


def evaluate_folders(
    fused_dirs: Mapping[str, str | os.PathLike[str]],
    ir_dir: str | os.PathLike[str],
    vis_dir: str | os.PathLike[str],
    metrics: str | Sequence[str] | None = None,
    profile: str | Profile = "paper",
    workers: int | None = None,
    skip_missing: bool = False,
    progress: bool = True,
) -> EvalResults:
    """Score fused folders against source folders, pairing images by file name (stem).

    Args:
        fused_dirs: ``{method name: folder}``; one row per method in the summaries.
        ir_dir, vis_dir: source folders (for medical data: CT/PET/SPECT and MRI). Every
            source image needs its partner (:func:`refinefuse.io.pair_folders`).
        metrics, profile: as in :func:`evaluate`.
        workers: processes; ``None`` = number of CPUs, ``1`` = no pool (in-process).
        skip_missing: skip source pairs without a fused image (counted in
            ``EvalResults.skipped``) instead of raising :class:`InputError`.
        progress: show a tqdm progress bar (on stderr).

    Warns:
        MetricWarning: one per line of :meth:`EvalResults.issues`: values that are NaN or
            infinite (left out of the means; the images are named), constant fused images
            and constant source images (degenerate scores).

    Raises:
        InputError: a missing fused image (without ``skip_missing``), an unreadable file,
            a size mismatch (the message names the file), or ``workers`` below 1.
    """
    prof = get_profile(profile)
    names = prof.resolve(metrics)
    if not fused_dirs:
        raise InputError("no fused folder given")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1):
        raise InputError(f"workers must be a whole number of at least 1, got {workers!r}")
    pairs = pair_folders(ir_dir, vis_dir, strict=True)
    fused_files = {method: images_by_stem(folder) for method, folder in fused_dirs.items()}

    skipped: dict[str, list[str]] = {method: [] for method in fused_dirs}
    tasks = []
    for pair in pairs:
        fused = []
        for method, files in fused_files.items():
            path = files.get(pair.name)
            if path is None:
                if not skip_missing:
                    raise InputError(
                        f"{Path(fused_dirs[method]) / pair.name}.*: no fused image for source pair "
                        f"'{pair.name}' ({pair.ir}, {pair.vis}); use --skip-missing to skip it"
                    )
                skipped[method].append(pair.name)
                continue
            fused.append((method, path))
        if fused:
            tasks.append((pair.name, pair.ir, pair.vis, fused))

    scores: dict[str, dict[str, dict[str, float]]] = {method: {} for method in fused_dirs}
    flat_fused: dict[str, list[str]] = {method: [] for method in fused_dirs}
    flat_sources: dict[str, tuple[str, ...]] = {}
    n_workers = min(workers or default_workers(), max(1, len(tasks)))
    bar = tqdm(total=len(tasks), desc="eval", unit="pair", disable=not progress)
    try:
        if n_workers <= 1:
            for result in (_score_pair(t, prof, names) for t in tasks):
                _collect(scores, flat_fused, flat_sources, *result)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")  # safe with torch/OpenCV threads in the parent
            with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker) as pool:
                chunk = max(1, min(8, len(tasks) // (4 * n_workers)))
                for result in pool.map(_score_pair, tasks, [prof] * len(tasks), [names] * len(tasks), chunksize=chunk):
                    _collect(scores, flat_fused, flat_sources, *result)
                    bar.update()
    finally:
        bar.close()
    results = EvalResults(
        profile=prof.name,
        metrics=names,
        methods=tuple(fused_dirs),
        scores={m: dict(sorted(s.items())) for m, s in scores.items()},
        skipped={m: s for m, s in skipped.items() if s},
        flat_fused={m: sorted(s) for m, s in flat_fused.items() if s},
        flat_sources=dict(sorted(flat_sources.items())),
    )
    for line in results.issues():
        warnings.warn(line, MetricWarning, stacklevel=2)
    return results


def _collect(
    scores: dict,
    flat_fused: dict[str, list[str]],
    flat_sources: dict[str, tuple[str, ...]],
    name: str,
    per_method: dict[str, dict[str, float]],
    flat_methods: list[str],
    flat_src: tuple[str, ...],
) -> None:
    for method, values in per_method.items():
        scores[method][name] = values
    for method in flat_methods:
        flat_fused[method].append(name)
    if flat_src:
        flat_sources[name] = flat_src

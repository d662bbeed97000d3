"""Fusion quality metrics (EN, SD, SF, AG, MI, MSE, CC, PSNR, SCD, VIF, Qabf, Nabf, SSIM).

Profiles (docs/design.md Sect. 5): ``paper`` (default; reproduces the paper's tables),
``cddfuse`` and ``tang``. See ``docs/metrics.md``.

>>> from refinefuse.metrics import evaluate
>>> evaluate(fused, ir, vis)  # doctest: +SKIP
{'VIF': ..., 'AG': ..., 'SCD': ..., 'Qabf': ..., 'SF': ..., 'EN': ..., 'SSIM': ...}
"""

from . import functional
from .evaluate import EvalResults, MetricWarning, as_grey, evaluate, evaluate_folders
from .functional import (
    average_gradient,
    correlation_coefficient,
    entropy,
    flat_region_artefact,
    mse,
    mutual_information,
    nabf,
    psnr,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    structural_similarity,
    vif,
    vifp,
)
from .profiles import PAPER_METRICS, PROFILES, Profile, get_profile, register_metric
from .report import (
    DEFAULT_COLUMNS,
    markdown_table,
    pipe_table,
    plot_summary,
    rank_marks,
    read_summary_json,
    summary,
    write_csv,
    write_reports,
    write_summary_json,
)

__all__ = [
    "functional",
    "EvalResults",
    "MetricWarning",
    "as_grey",
    "evaluate",
    "evaluate_folders",
    "average_gradient",
    "correlation_coefficient",
    "entropy",
    "mse",
    "mutual_information",
    "nabf",
    "psnr",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "structural_similarity",
    "vif",
    "vifp",
    "flat_region_artefact",
    "PAPER_METRICS",
    "PROFILES",
    "Profile",
    "get_profile",
    "register_metric",
    "DEFAULT_COLUMNS",
    "markdown_table",
    "pipe_table",
    "plot_summary",
    "rank_marks",
    "read_summary_json",
    "summary",
    "write_csv",
    "write_reports",
    "write_summary_json",
]

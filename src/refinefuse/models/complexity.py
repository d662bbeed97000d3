"""Model size: parameters and convolution MACs (the "FLOPs" of the fusion literature).

:func:`count_macs` uses ``thop.profile`` on a deep copy of the model (the model itself is
left untouched) and counts only ``nn.Conv2d`` / ``nn.Linear`` multiply-accumulates; the
attention matmuls, pooling, interpolation and activations are not counted, as in the paper's
Table 11. RefineFuse pads its input to a multiple of its total stride, so for sizes that are
not such a multiple the count is for the padded size the network actually processes.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

__all__ = ["count_params", "count_macs"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _zero_ops(module: nn.Module, inputs: object, output: object) -> None:
    module.get_buffer("total_ops").add_(torch.zeros(1, dtype=torch.float64))  # thop's per-module count


def count_macs(model: nn.Module, height: int = 256, width: int = 256) -> int:
    """Conv/linear multiply-accumulates of one forward pass on a ``(1, 1, height, width)`` pair."""
    import thop  # imported lazily: slow import, only needed here

    counted = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
    probe = copy.deepcopy(model).eval()
    # other leaf modules thop knows (activations, norms, pooling, upsampling) count zero; containers
    # must keep no rule, or thop would take their (zero) count instead of their children's sum
    leaves = {type(mod) for mod in probe.modules() if next(mod.children(), None) is None}
    custom = {t: _zero_ops for t in leaves if not issubclass(t, counted)}
    param = next(probe.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, 1, int(height), int(width), device=device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = thop.profile(probe, inputs=(x, x.clone()), custom_ops=custom, verbose=False)
    return int(macs)

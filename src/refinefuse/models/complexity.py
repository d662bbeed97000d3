"""Model size: parameters and convolution MACs (the "FLOPs" of the fusion literature).

:func:`count_macs` runs one forward pass of the model under PyTorch's
:class:`torch.utils.flop_counter.FlopCounterMode` and keeps the convolution and linear-layer
products (``aten.convolution``, ``aten.addmm``, ``aten.mm``), whether a layer is called as a
module or through ``torch.nn.functional`` (SFIM's depthwise pair, PSIM's split key/value
convs); the attention products (``bmm``/SDPA), pooling, interpolation and activations are
not counted, as in the paper's Table 11. RefineFuse pads its input to a multiple of its
total stride, so for sizes that are not such a multiple the count is for the padded size the
network actually processes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_macs"]

#: operators whose products are counted: convolutions and linear layers
_COUNTED_OPS = ("aten.convolution", "aten.addmm", "aten.mm")


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, height: int = 256, width: int = 256) -> int:
    """Conv/linear multiply-accumulates of one forward pass on a ``(1, 1, height, width)`` pair.

    The model is run in eval mode without gradients and put back in its previous mode.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, 1, int(height), int(width), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x, x.clone())
    finally:
        model.train(was_training)
    flops = counter.get_flop_counts().get("Global", {})
    return int(sum(v for op, v in flops.items() if str(op) in _COUNTED_OPS)) // 2  # FLOPs = 2 x MACs

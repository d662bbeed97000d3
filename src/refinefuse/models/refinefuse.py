"""RefineFuse network (paper Sect. 3, Fig. 2; docs/design.md Sect. 1).

Two encoders (one per modality, weights not shared) give features at scales 1, 1/2, ...,
1/2^(levels-1). Levels 1-2 are fused by SFIM, deeper levels by PSIM (``psim_from`` moves
the boundary: the 2-level Table 9 IV variant has PSIM at level 2). The decoding path is
U-Net like: decoder ``k`` (k = levels..2) maps level ``k`` to level ``k-1`` (1x1 conv, 3x3
conv, bilinear upsampling) and takes the previous decoder's output concatenated with the
fused feature of its level; at level 2 the skip goes through FIM instead of concatenation;
decoder 1 (four 3x3 convs, Tanh last) turns ``cat(decoder-2 output, level-1 fused)`` into
the image. With 2 levels there is no deep decoder output for FIM (decoder 2 takes the
level-2 fused feature alone); with 1 level decoder 1 takes the level-1 fused feature alone
(paper Table 9 I-IV; docs/design.md Sect. 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (
    ConcatFuse,
    ConvAct,
    DeepShallowInteraction,
    OutputDecoder,
    ProfoundInteraction,
    SuperficialInteraction,
    UpDecoder,
)

__all__ = ["RefineFuse", "pad_to_multiple", "crop_to"]

#: Default widths of levels 1..5 (the paper gives none). Chosen for size fidelity with the
#: paper's Table 11 (2.21 M parameters, 12.73 G MACs at 256x256): at 4 levels this model has
#: 2.20 M parameters and 12.74 G conv MACs at 256x256 (50.97 G at 512x512; paper 48.11 G).
DEFAULT_CHANNELS = (64, 72, 88, 112, 128)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(N, C, H, W)`` at the bottom/right to a multiple of ``multiple``; returns ``(padded, (H, W))``.

    Reflect padding where the image is large enough, otherwise replicate (e.g. 1-px images).
    :func:`crop_to` with the returned size restores the input exactly.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop ``(..., H', W')`` to its top-left ``size = (H, W)``."""
    return x[..., : size[0], : size[1]]


def _encoder(channels: Sequence[int], act: str) -> nn.ModuleList:
    """One modality's encoder: one 3x3 conv per level, the first stride 1, the others stride 2."""
    widths = (1, *channels)
    return nn.ModuleList(
        ConvAct(widths[i], widths[i + 1], 3, stride=1 if i == 0 else 2, act=act) for i in range(len(channels))
    )


class RefineFuse(nn.Module):
    """RefineFuse: ``forward(ir, vis)`` with ``(N, 1, H, W)`` in [0, 1] -> fused ``(N, 1, H, W)`` in [0, 1].

    Any ``H, W``: inputs are padded internally to a multiple of ``2 ** (levels - 1)`` and
    the output is cropped back.

    Args:
        channels: feature widths per level (at least ``levels`` values; extra ones ignored).
        levels: 3, 4 (paper) or 5 encoder levels (max downsampling 1/4, 1/8, 1/16); 1 or 2
            for the Table 9 ablations (no FIM there: ``fim`` must be False).
        sfim: SFIM at the levels below ``psim_from`` (False: concatenate + conv).
        psim: PSIM at levels >= ``psim_from`` (False: concatenate + conv).
        fim: FIM between the deep decoder output and level 2 (False: concatenate + conv).
        psim_pool: average-pooling factor before attention per PSIM level (3, 4, ...);
            default ``2 ** (level - 1)``: 4 at level 3, 8 at level 4 (docs/design.md Sect. 1, a reading).
        psim_from: first level fused by PSIM (default 3, the paper's; 2 for Table 9 IV, where
            the 2-level network has SFIM at level 1 and PSIM at level 2). Stored in ``config``
            only when not 3, so the configs of existing checkpoints stay unchanged.
        heads: attention heads in PSIM.
        head_channels: widths of decoder 1's first three convs (default ``(c1, c1, c1 // 2)``).
        act: encoder/fusion activation (``"lrelu"`` or ``"relu"``); decoders use ReLU.
        out_margin: the output is ``clamp((1 + 2m) (tanh + 1) / 2 - m, 0, 1)`` with ``m =
            out_margin``. 0 is the paper's ``(tanh + 1) / 2``, which never reaches exact 0 or
            1 with finite activations (a black background comes out about 1 grey level up);
            a small margin lets the network produce exact black and white.
    """

    def __init__(
        self,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        levels: int = 4,
        sfim: bool = True,
        psim: bool = True,
        fim: bool = True,
        psim_pool: Sequence[int] | None = None,
        heads: int = 1,
        head_channels: Sequence[int] | None = None,
        act: str = "lrelu",
        out_margin: float = 0.0,
        psim_from: int = 3,
    ) -> None:
        super().__init__()
        if levels not in (1, 2, 3, 4, 5):
            raise ValueError(f"levels must be 1, 2, 3, 4 or 5, got {levels}")
        if len(channels) < levels:
            raise ValueError(f"channels needs {levels} widths, got {list(channels)}")
        if not 2 <= psim_from <= 5:
            raise ValueError(f"psim_from must be 2 to 5 (PSIM at full resolution is not supported), got {psim_from}")
        if fim and levels < 3:
            raise ValueError(f"FIM needs a deep decoder output (levels >= 3); pass fim=False for levels={levels}")
        ch = [int(c) for c in channels[:levels]]
        n_psim = max(0, levels - psim_from + 1)
        pools = (
            [2 ** (lvl - 1) for lvl in range(psim_from, levels + 1)]
            if psim_pool is None
            else [int(p) for p in psim_pool]
        )
        if len(pools) < n_psim:
            raise ValueError(f"psim_pool needs {n_psim} factors for levels={levels}, got {pools}")
        pools = pools[:n_psim]
        head = [int(c) for c in head_channels] if head_channels is not None else [ch[0], ch[0], max(1, ch[0] // 2)]
        self.model_name = "refinefuse"
        self.config = {
            "channels": ch,
            "levels": int(levels),
            "sfim": bool(sfim),
            "psim": bool(psim),
            "fim": bool(fim),
            "psim_pool": pools,
            "heads": int(heads),
            "head_channels": head,
            "act": act,
        }
        if out_margin:  # only non-default: older checkpoints' configs round-trip unchanged
            self.config["out_margin"] = float(out_margin)
        if psim_from != 3:  # likewise
            self.config["psim_from"] = int(psim_from)
        self.out_margin = float(out_margin)
        self.levels = levels
        self.stride = 2 ** (levels - 1)

        self.encoder_ir = _encoder(ch, act)
        self.encoder_vis = _encoder(ch, act)
        fusions: list[nn.Module] = []
        for i, c in enumerate(ch):
            if i < psim_from - 1:
                fusions.append(SuperficialInteraction(c, act) if sfim else ConcatFuse(c, act))
            else:
                pool = pools[i - psim_from + 1]
                fusions.append(ProfoundInteraction(c, pool, heads, act=act) if psim else ConcatFuse(c, act))
        self.fusions = nn.ModuleList(fusions)

        # decoders[k] maps level k+1 (0-based k) to level k: decoders for levels L..2
        decoders = []
        for k in range(levels - 1, 0, -1):  # level index (0-based) k = L-1 .. 1
            in_c = ch[k] if (k == levels - 1 or k == 1) else 2 * ch[k]
            decoders.append(UpDecoder(in_c, ch[k], ch[k - 1]))
        self.decoders = nn.ModuleList(decoders)  # ordered deepest first
        # FIM (or concat) joins the deep decoder output and level 2: none below 3 levels
        self.interaction: nn.Module | None = None
        if levels >= 3:
            self.interaction = DeepShallowInteraction(ch[1]) if fim else ConcatFuse(ch[1], act)
        head_in = 2 * ch[0] if levels > 1 else ch[0]  # 1 level: the level-1 fused feature alone
        self.head = OutputDecoder(head_in, tuple(head))  # type: ignore[arg-type]

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        if ir.shape != vis.shape or ir.dim() != 4 or ir.shape[1] != 1:
            raise ValueError(
                f"expected two (N, 1, H, W) tensors of equal shape, got {tuple(ir.shape)} and {tuple(vis.shape)}"
            )
        both, size = pad_to_multiple(torch.cat((ir, vis), dim=0), self.stride)
        ir, vis = both.chunk(2, dim=0)
        fused = []  # encode and fuse level by level so only one level's encoder features are alive
        for conv_ir, conv_vis, fuse in zip(self.encoder_ir, self.encoder_vis, self.fusions):
            ir, vis = conv_ir(ir), conv_vis(vis)
            fused.append(fuse(ir, vis))

        x = fused[-1]
        for decoder, k in zip(self.decoders, range(self.levels - 1, 0, -1)):
            if k == 1 and self.interaction is not None:  # level 2: FIM (or concat) of deep output and SFIM output
                x = self.interaction(x, fused[1])
            elif k < self.levels - 1:
                x = torch.cat((x, fused[k]), dim=1)
            x = decoder(x, fused[k - 1].shape[-2:])
        out = self.head(torch.cat((x, fused[0]), dim=1) if self.levels > 1 else fused[0])
        out = (out + 1) / 2
        if self.out_margin:
            out = ((1 + 2 * self.out_margin) * out - self.out_margin).clamp(0.0, 1.0)
        return crop_to(out, size)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())

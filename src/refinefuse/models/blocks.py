"""Building blocks of RefineFuse (paper Sect. 3, Fig. 2; docs/design.md Sect. 1).

All blocks take and return ``(N, C, H, W)`` float tensors. Fusion blocks take the two
modalities' features ``(ir, vis)`` of equal shape and return one fused feature map.
Only ``nn.Conv2d`` layers carry weights; :func:`refinefuse.models.complexity.count_macs`
counts every convolution, called as a module or functionally.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvAct",
    "SpatialAttention",
    "ChannelAttention",
    "SuperficialInteraction",
    "ProfoundInteraction",
    "DeepShallowInteraction",
    "ConcatFuse",
    "UpDecoder",
    "OutputDecoder",
    "interleave",
    "split_grouped_conv",
    "resize_to",
]


def _activation(name: str) -> nn.Module:
    if name == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r} (expected lrelu, relu, tanh or none)")


class ConvAct(nn.Sequential):
    """``k x k`` convolution ('same' padding for stride 1) followed by an activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: str = "lrelu",
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups),
            _activation(act),
        )


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of ``x`` to spatial ``size`` (no-op when it already has that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Channel interleave ``(N,C,H,W), (N,C,H,W) -> (N,2C,H,W)`` as ``a0, b0, a1, b1, ...``.

    Together with a grouped conv (``groups=C``) this is the paper's "group splicing" (Eq. 2):
    channel ``a`` of one modality is fused only with channel ``a`` of the other.
    """
    n, c, h, w = a.shape
    return torch.stack((a, b), dim=2).reshape(n, 2 * c, h, w)


def split_grouped_conv(conv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-group ``conv`` applied to ``x`` as two plain convs: ``conv(x).chunk(2, dim=1)``.

    The same numbers; ONNX Runtime's int8 kernels are fast for plain convs and slow for
    grouped ones (docs/efficiency.md), so the exported graph has no grouped conv.
    """
    if conv.groups != 2:
        raise ValueError(f"expected a conv with groups=2, got groups={conv.groups}")
    cin, cout = conv.in_channels // 2, conv.out_channels // 2
    ir_half, vis_half = (
        F.conv2d(
            x[:, i * cin : (i + 1) * cin],
            conv.weight[i * cout : (i + 1) * cout],
            None if conv.bias is None else conv.bias[i * cout : (i + 1) * cout],
            conv.stride,
            conv.padding,
        )
        for i in range(2)
    )
    return ir_half, vis_half


class SpatialAttention(nn.Module):
    """Max- and average-pool across channels, 3x3 conv, sigmoid: ``(N,C,H,W) -> (N,maps,H,W)`` in (0, 1)."""

    def __init__(self, maps: int = 1, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, maps, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)), dim=1)
        return torch.sigmoid(self.conv(pooled))


class ChannelAttention(nn.Module):
    """Global average pooling, 1x1 conv, sigmoid: ``(N,C,H,W) -> (N,C,1,1)`` weights in (0, 1).

    The paper says "global average pooling + sigmoid"; the 1x1 conv (C -> C, docs/design.md
    Sect. 1) makes the weights learnable instead of a fixed function of the mean activation
    (``proj=False`` drops it).
    """

    def __init__(self, channels: int, proj: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1) if proj else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(x.mean(dim=(2, 3), keepdim=True)))


class SuperficialInteraction(nn.Module):
    """SFIM (Eq. 1-2): dual spatial attention, then per-channel group splicing.

    ``A = sigmoid(conv3x3([maxpool_c, avgpool_c](cat(ir, vis))))`` has one channel per
    modality; ``f_m' = f_m + f_m * A_m``; the enhanced features are interleaved channel by
    channel and fused by a 3x3 grouped conv (groups = C) -> ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, act: str = "lrelu") -> None:
        super().__init__()
        self.attention = SpatialAttention(maps=2)
        self.fuse = ConvAct(2 * channels, channels, 3, groups=channels, act=act)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        att = self.attention(torch.cat((ir, vis), dim=1))
        ir = torch.addcmul(ir, ir, att[:, 0:1])  # f + f * A, one allocation
        vis = torch.addcmul(vis, vis, att[:, 1:2])
        # ``self.fuse(interleave(ir, vis))`` computed as two depthwise convs and a sum: the same
        # numbers (the grouped conv's weight (C, 2, 3, 3) split into its ir and vis halves), no
        # interleaved copy, and a graph whose int8 export ONNX Runtime runs fast (its kernel for
        # two-channel groups is slower in int8 than in fp32; docs/efficiency.md)
        conv, act = cast(nn.Conv2d, self.fuse[0]), self.fuse[1]
        c, pad = conv.out_channels, cast(tuple[int, int], conv.padding)
        fused = F.conv2d(ir, conv.weight[:, 0:1], conv.bias, padding=pad, groups=c)
        fused = fused + F.conv2d(vis, conv.weight[:, 1:2], None, padding=pad, groups=c)
        return act(fused)


class ProfoundInteraction(nn.Module):
    """PSIM (Eq. 3-4): cross-attention with queries from both modalities.

    The level's features are average-pooled by ``pool`` (docs/design.md Sect. 1: factor 4 at level 3,
    8 at level 4; ``ceil_mode`` so any size gives >= 1 px), then
    ``Q = conv3x3(cat(ir, vis))``, ``K_m = conv3x3(f_m)``, ``V_m = conv3x3(f_m)``;
    ``G_m = softmax(Q K_m^T / sqrt(d)) V_m`` (multi-head, via
    :func:`torch.nn.functional.scaled_dot_product_attention`), bilinearly upsampled and
    added to ``f_m``; the two results are concatenated and fused by a 3x3 conv.
    ``qk_channels`` (default ``channels``) sets the query/key width ``d * heads``.
    """

    def __init__(
        self,
        channels: int,
        pool: int = 4,
        heads: int = 1,
        qk_channels: int | None = None,
        act: str = "lrelu",
    ) -> None:
        super().__init__()
        qk = qk_channels or channels
        if qk % heads or channels % heads:
            raise ValueError(f"heads={heads} must divide channels={channels} and qk_channels={qk}")
        self.pool, self.heads = int(pool), int(heads)
        self.query = nn.Conv2d(2 * channels, qk, 3, padding=1)
        # keys and values of both modalities, each from its own modality (grouped = separate convs)
        self.key = nn.Conv2d(2 * channels, 2 * qk, 3, padding=1, groups=2)
        self.value = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2)
        self.fuse = ConvAct(2 * channels, channels, 3, act=act)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w) -> (N, heads, h*w, C/heads)``."""
        n, c, h, w = x.shape
        return x.reshape(n, self.heads, c // self.heads, h * w).transpose(-1, -2)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        both = torch.cat((ir, vis), dim=1)
        small = both
        if self.pool > 1:
            small = F.avg_pool2d(both, self.pool, self.pool, ceil_mode=True, count_include_pad=False)
        n, _, h, w = small.shape
        q = self._tokens(self.query(small))
        k_ir, k_vis = split_grouped_conv(self.key, small)
        v_ir, v_vis = split_grouped_conv(self.value, small)
        # one SDPA call for both modalities: stack them on the batch axis
        k = self._tokens(torch.cat((k_ir, k_vis), dim=0))
        v = self._tokens(torch.cat((v_ir, v_vis), dim=0))
        g = F.scaled_dot_product_attention(q.repeat(2, 1, 1, 1), k, v)
        g = g.transpose(-1, -2).reshape(2 * n, -1, h, w)
        g = resize_to(g, both.shape[-2:])
        g_ir, g_vis = g.chunk(2, dim=0)
        return self.fuse(torch.cat((ir + g_ir, vis + g_vis), dim=1))


class DeepShallowInteraction(nn.Module):
    """FIM (Eq. 5): deep semantics guide the level-2 (shallow) fused features.

    ``s' = s * CA(deep) + s * CA(s)`` (channel attention of both, weighting the shallow
    features), ``s'' = s' + s' * SA(s')`` (spatial attention as in SFIM), output
    ``s'' + up(deep)`` with ``up`` a bilinear resize to ``s``'s size (identity when the
    decoder already produced that size). ``deep`` and ``shallow``: ``(N, C, *, *)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.deep_channel = ChannelAttention(channels)
        self.shallow_channel = ChannelAttention(channels)
        self.spatial = SpatialAttention(maps=1)

    def forward(self, deep: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        deep = resize_to(deep, shallow.shape[-2:])
        s = shallow * (self.deep_channel(deep) + self.shallow_channel(shallow))
        s = torch.addcmul(s, s, self.spatial(s))
        return s + deep


class ConcatFuse(nn.Module):
    """Ablation baseline: ``conv3x3(cat(a, b))`` with ``a, b: (N, C, H, W) -> (N, C, H, W)``.

    Replaces SFIM/PSIM (``a, b`` = ir, vis) or FIM (``a, b`` = deep, shallow; ``a`` is resized).
    """

    def __init__(self, channels: int, act: str = "lrelu") -> None:
        super().__init__()
        self.fuse = ConvAct(2 * channels, channels, 3, act=act)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat((resize_to(a, b.shape[-2:]), b), dim=1))


class UpDecoder(nn.Module):
    """Decoders 2-4: 1x1 conv, 3x3 conv, bilinear upsampling to ``size`` given at call time."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, act: str = "relu") -> None:
        super().__init__()
        self.reduce = ConvAct(in_channels, mid_channels, 1, act=act)
        self.conv = ConvAct(mid_channels, out_channels, 3, act=act)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        return resize_to(self.conv(self.reduce(x)), size)


class OutputDecoder(nn.Sequential):
    """Decoder 1: four 3x3 convs, ReLU except the last (Tanh): ``(N, C_in, H, W) -> (N, 1, H, W)`` in [-1, 1]."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int]) -> None:
        a, b, c = widths
        super().__init__(
            ConvAct(in_channels, a, act="relu"),
            ConvAct(a, b, act="relu"),
            ConvAct(b, c, act="relu"),
            ConvAct(c, 1, act="tanh"),
        )

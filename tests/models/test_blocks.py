"""RefineFuse building blocks: shapes, value ranges, and the paper's equations against
plain reference implementations (explicit softmax attention, explicit grouped conv)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from refinefuse.models.blocks import (
    ChannelAttention,
    ConcatFuse,
    ConvAct,
    DeepShallowInteraction,
    OutputDecoder,
    ProfoundInteraction,
    SpatialAttention,
    SuperficialInteraction,
    UpDecoder,
    interleave,
    split_grouped_conv,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_interleave_alternates_channels():
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    x = interleave(a, b)
    assert x.shape == (2, 6, 4, 5)
    assert torch.equal(x[:, 0::2], a) and torch.equal(x[:, 1::2], b)


@pytest.mark.parametrize("maps", [1, 2])
def test_spatial_attention_shape_and_range(maps):
    att = SpatialAttention(maps)(torch.randn(2, 7, 9, 11) * 10)
    assert att.shape == (2, maps, 9, 11)
    assert att.min() >= 0 and att.max() <= 1


def test_spatial_attention_pools_max_and_mean_over_channels():
    sa = SpatialAttention(1)
    x = torch.randn(1, 5, 6, 6)
    pooled = torch.cat((x.max(dim=1, keepdim=True).values, x.mean(dim=1, keepdim=True)), dim=1)
    expected = torch.sigmoid(F.conv2d(pooled, sa.conv.weight, sa.conv.bias, padding=1))
    torch.testing.assert_close(sa(x), expected)


def test_channel_attention_shape_range_and_spatial_invariance():
    ca = ChannelAttention(6)
    x = torch.randn(3, 6, 8, 10)
    w = ca(x)
    assert w.shape == (3, 6, 1, 1) and w.min() > 0 and w.max() < 1
    # depends only on the global average: a spatial permutation gives the same weights
    torch.testing.assert_close(ca(x.flip(-1).flip(-2)), w)
    assert ChannelAttention(6, proj=False)(x).shape == (3, 6, 1, 1)


def test_sfim_matches_equations_1_2():
    c = 4
    sfim = SuperficialInteraction(c)
    ir, vis = torch.randn(2, c, 9, 7), torch.randn(2, c, 9, 7)
    both = torch.cat((ir, vis), 1)
    pooled = torch.cat((both.amax(1, keepdim=True), both.mean(1, keepdim=True)), 1)
    att = torch.sigmoid(F.conv2d(pooled, sfim.attention.conv.weight, sfim.attention.conv.bias, padding=1))
    ir2, vis2 = ir + ir * att[:, :1], vis + vis * att[:, 1:]
    # explicit per-channel pairs [ir_a, vis_a] and a 3x3 conv per pair
    conv = sfim.fuse[0]
    outs = []
    for a in range(c):
        pair = torch.cat((ir2[:, a : a + 1], vis2[:, a : a + 1]), 1)
        outs.append(F.conv2d(pair, conv.weight[a : a + 1], conv.bias[a : a + 1], padding=1))
    expected = F.leaky_relu(torch.cat(outs, 1), 0.2)
    torch.testing.assert_close(sfim(ir, vis), expected)


def test_sfim_is_a_grouped_conv_over_interleaved_channels():
    # Eq. 2 as the paper states it (interleave, grouped conv); the module computes it as two
    # depthwise convs, which must give the same numbers
    c = 6
    sfim = SuperficialInteraction(c)
    ir, vis = torch.randn(2, c, 11, 9), torch.randn(2, c, 11, 9)
    att = sfim.attention(torch.cat((ir, vis), 1))
    expected = sfim.fuse(interleave(ir + ir * att[:, :1], vis + vis * att[:, 1:]))
    torch.testing.assert_close(sfim(ir, vis), expected, rtol=1e-5, atol=1e-6)


def test_split_grouped_conv_matches_the_grouped_conv():
    conv = torch.nn.Conv2d(8, 6, 3, padding=1, groups=2)
    x = torch.randn(2, 8, 7, 5)
    halves = split_grouped_conv(conv, x)
    for got, want in zip(halves, conv(x).chunk(2, dim=1), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="groups=2"):
        split_grouped_conv(torch.nn.Conv2d(8, 6, 3, groups=1), x)


def test_sfim_group_splicing_keeps_channels_separate():
    c = 5
    sfim = SuperficialInteraction(c)
    torch.nn.init.zeros_(sfim.attention.conv.weight)  # constant attention: isolate the grouped conv
    ir, vis = torch.randn(1, c, 8, 8), torch.randn(1, c, 8, 8)
    base = sfim(ir, vis)
    vis2 = vis.clone()
    vis2[:, 2] += 1.0
    changed = (sfim(ir, vis2) - base).abs().amax(dim=(0, 2, 3)) > 0
    assert changed.tolist() == [False, False, True, False, False]


@pytest.mark.parametrize("heads", [1, 2])
def test_psim_matches_explicit_softmax_attention(heads):
    c, pool = 4, 2
    psim = ProfoundInteraction(c, pool=pool, heads=heads)
    ir, vis = torch.randn(2, c, 10, 6), torch.randn(2, c, 10, 6)
    small_ir, small_vis = F.avg_pool2d(ir, pool), F.avg_pool2d(vis, pool)
    small = torch.cat((small_ir, small_vis), 1)
    q = psim.query(small)
    kw, kb = psim.key.weight, psim.key.bias
    vw, vb = psim.value.weight, psim.value.bias
    results = []
    for m, x in enumerate((small_ir, small_vis)):  # per modality, its own K/V convs (Eq. 3)
        k = F.conv2d(x, kw[m * c : (m + 1) * c], kb[m * c : (m + 1) * c], padding=1)
        v = F.conv2d(x, vw[m * c : (m + 1) * c], vb[m * c : (m + 1) * c], padding=1)
        n, _, h, w = q.shape
        d = c // heads
        qt = q.reshape(n, heads, d, h * w).transpose(-1, -2)
        kt = k.reshape(n, heads, d, h * w).transpose(-1, -2)
        vt = v.reshape(n, heads, d, h * w).transpose(-1, -2)
        attn = torch.softmax(qt @ kt.transpose(-1, -2) / math.sqrt(d), dim=-1)  # Eq. 4
        g = (attn @ vt).transpose(-1, -2).reshape(n, c, h, w)
        g = F.interpolate(g, size=ir.shape[-2:], mode="bilinear", align_corners=False)
        results.append((ir, vis)[m] + g)
    expected = psim.fuse(torch.cat(results, 1))
    torch.testing.assert_close(psim(ir, vis), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (13, 9)])
def test_psim_any_size_with_large_pool(size):
    psim = ProfoundInteraction(8, pool=8, heads=2)
    ir, vis = torch.randn(1, 8, *size), torch.randn(1, 8, *size)
    assert psim(ir, vis).shape == (1, 8, *size)


def test_psim_rejects_heads_not_dividing_channels():
    with pytest.raises(ValueError):
        ProfoundInteraction(6, heads=4)


def test_fim_matches_equation_5_and_upsamples_deep():
    c = 3
    fim = DeepShallowInteraction(c)
    deep, shallow = torch.randn(2, c, 4, 5), torch.randn(2, c, 8, 10)
    up = F.interpolate(deep, size=(8, 10), mode="bilinear", align_corners=False)
    s = shallow * (fim.deep_channel(up) + fim.shallow_channel(shallow))
    s = s + s * fim.spatial(s)
    out = fim(deep, shallow)
    assert out.shape == shallow.shape
    torch.testing.assert_close(out, s + up)


def test_concat_fuse_and_decoders_shapes():
    a, b = torch.randn(2, 6, 5, 7), torch.randn(2, 6, 10, 14)
    assert ConcatFuse(6)(a, b).shape == (2, 6, 10, 14)
    up = UpDecoder(6, 4, 3)(b, (19, 27))
    assert up.shape == (2, 3, 19, 27)
    y = OutputDecoder(6, (4, 4, 2))(b * 100)
    assert y.shape == (2, 1, 10, 14) and y.min() >= -1 and y.max() <= 1
    assert ConvAct(3, 5, 3, stride=2)(torch.randn(1, 3, 9, 9)).shape == (1, 5, 5, 5)
    with pytest.raises(ValueError):
        ConvAct(3, 5, act="swishy")

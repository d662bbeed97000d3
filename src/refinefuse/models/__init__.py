"""Model registry (timm-like): ``create_model(name, **overrides)``, ``list_models()``.

``create_model(model.model_name, **model.config)`` rebuilds any registered model exactly
(the checkpoint format relies on it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .refinefuse import RefineFuse

__all__ = ["RefineFuse", "create_model", "list_models", "register_model"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a factory ``fn(**overrides) -> nn.Module`` under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str = "refinefuse", **overrides: Any) -> nn.Module:
    """Build registered model ``name``; keyword arguments override its default config."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    model = factory(**overrides)
    model.model_name = name  # type: ignore[assignment]  # torch types Module.__setattr__ values as Tensor | Module
    return model


def _refinefuse(defaults: dict[str, Any], overrides: dict[str, Any]) -> RefineFuse:
    return RefineFuse(**{**defaults, **overrides})


@register_model
def refinefuse(**overrides: Any) -> RefineFuse:
    """Paper configuration: 4 levels, SFIM + PSIM + FIM (2.2 M parameters)."""
    return _refinefuse({}, overrides)


@register_model
def refinefuse_l3(**overrides: Any) -> RefineFuse:
    """3 levels (max downsampling 1/4), Table 10 ablation."""
    return _refinefuse({"levels": 3}, overrides)


@register_model
def refinefuse_l5(**overrides: Any) -> RefineFuse:
    """5 levels (max downsampling 1/16), Table 10 ablation."""
    return _refinefuse({"levels": 5}, overrides)


@register_model
def refinefuse_no_sfim(**overrides: Any) -> RefineFuse:
    """SFIM replaced by concatenate + conv (Table 9 ablation)."""
    return _refinefuse({"sfim": False}, overrides)


@register_model
def refinefuse_no_psim(**overrides: Any) -> RefineFuse:
    """PSIM replaced by concatenate + conv (Table 9 ablation)."""
    return _refinefuse({"psim": False}, overrides)


@register_model
def refinefuse_no_fim(**overrides: Any) -> RefineFuse:
    """FIM replaced by concatenate + conv (Table 9 ablation)."""
    return _refinefuse({"fim": False}, overrides)


# Table 9 ablations I-IV (V is refinefuse_no_fim): shallower networks without FIM (docs/design.md Sect. 1)
@register_model
def refinefuse_l1_cat(**overrides: Any) -> RefineFuse:
    """Table 9 I: 1 level, the two level-1 features fused by plain concatenation + conv (no SFIM, PSIM, FIM)."""
    return _refinefuse({"levels": 1, "sfim": False, "psim": False, "fim": False}, overrides)


@register_model
def refinefuse_l1(**overrides: Any) -> RefineFuse:
    """Table 9 II: 1 level fused by SFIM (no PSIM, no FIM)."""
    return _refinefuse({"levels": 1, "psim": False, "fim": False}, overrides)


@register_model
def refinefuse_l2(**overrides: Any) -> RefineFuse:
    """Table 9 III: 2 levels (max downsampling 1/2), SFIM at both (no PSIM, no FIM)."""
    return _refinefuse({"levels": 2, "psim": False, "fim": False}, overrides)


@register_model
def refinefuse_l2_psim(**overrides: Any) -> RefineFuse:
    """Table 9 IV: 2 levels, SFIM at level 1 and PSIM at level 2 (its deepest level), no FIM.

    PSIM pools level 2 by 8 (to 1/16 of the input, the grid the full model's level-3 PSIM attends on):
    the default 2 ** (level - 1) = 2 would attend over 19,200 tokens at 640x480 (about 5x slower on the CPU).
    """
    return _refinefuse({"levels": 2, "psim_from": 2, "psim_pool": [8], "fim": False}, overrides)

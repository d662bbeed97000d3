"""refinefuse: multi-modal image fusion (infrared + visible, MRI + CT/PET/SPECT)."""

__version__ = "0.1.0"

__all__ = ["RefineFuse", "create_model", "__version__"]


def __getattr__(name: str):
    # ``from refinefuse import RefineFuse`` works, but ``import refinefuse`` stays cheap
    # (torch is imported only when the model is first asked for).
    if name in ("RefineFuse", "create_model"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'refinefuse' has no attribute {name!r}")

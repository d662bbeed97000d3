"""refinefuse: multi-modal image fusion (infrared + visible, MRI + CT/PET/SPECT)."""

__version__ = "0.1.0"

from .models import RefineFuse, create_model  # noqa: E402  (torch only; thop is imported lazily)

__all__ = ["RefineFuse", "create_model", "__version__"]

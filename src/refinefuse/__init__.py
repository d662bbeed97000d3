"""refinefuse: multi-modal image fusion (infrared + visible, MRI + CT/PET/SPECT)."""

__version__ = "0.1.0"

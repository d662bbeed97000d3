"""Training (``refinefuse train``): the loop (:mod:`.loop`), the runtime it sets up and
restores (:mod:`.runtime`: device, processes, threads, seeds) and the run folder
(:mod:`.run_folder`: checkpoints, resuming, the log)."""

from .loop import EpochSampler, TrainingDiverged, build_config, check_config, lr_factor, train, validate
from .run_folder import BEST, LAST
from .runtime import Runtime, training_runtime

__all__ = [
    "train",
    "build_config",
    "check_config",
    "lr_factor",
    "validate",
    "EpochSampler",
    "TrainingDiverged",
    "Runtime",
    "training_runtime",
    "LAST",
    "BEST",
]

"""The pieces that make a run safe to interrupt and resume; train.py adds them to every Trainer."""

from training.atomic_checkpoint_io import AtomicCheckpointIO, save_atomically
from training.divergence import StopOnNonFiniteLoss, TrainingDiverged
from training.interrupt import SaveOnInterrupt, TrainingInterrupted
from training.resume import (
    KeepLastCheckpointCurrent,
    MarkResumeInTensorBoard,
    RestoreMonitoredMetrics,
    RestoreRNG,
    find_last_checkpoint,
    run_version,
)

__all__ = [
    "AtomicCheckpointIO",
    "KeepLastCheckpointCurrent",
    "MarkResumeInTensorBoard",
    "RestoreMonitoredMetrics",
    "RestoreRNG",
    "SaveOnInterrupt",
    "StopOnNonFiniteLoss",
    "TrainingDiverged",
    "TrainingInterrupted",
    "find_last_checkpoint",
    "run_version",
    "save_atomically",
]

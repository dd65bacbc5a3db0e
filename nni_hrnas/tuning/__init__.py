"""Optuna inside NNI (a custom tuner) and the storages both use."""

from .nni_tuner import OptunaTuner, to_optuna_distribution
from .storage import open_storage

__all__ = ["OptunaTuner", "open_storage", "to_optuna_distribution"]

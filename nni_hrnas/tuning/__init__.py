"""Optuna inside NNI (a custom tuner) and the storages both use.

Studies outside NNI (``hrnas study``) are :mod:`.study`; it is not imported here, as nnictl's
dispatcher imports this package for the tuner alone.
"""

from .nni_tuner import OptunaTuner
from .storage import open_storage

__all__ = ["OptunaTuner", "open_storage"]

"""Command-line logging: the ``nni_hrnas`` loggers write to standard error, whatever else is set up."""

from __future__ import annotations

import logging
import sys
import warnings


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is at each record (pytest and redirects swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_cli_logging(verbose: bool = False) -> None:
    """Send ``nni_hrnas`` logs to standard error once (idempotent); stdout stays for ``--json``."""
    logger = logging.getLogger("nni_hrnas")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    # Lightning's one-line notices (device summary, logger tips) are for its own scripts; on our
    # commands they bury the summary. Their warnings still show.
    for name in (
        "pytorch_lightning.utilities.rank_zero",
        "lightning_fabric.utilities.rank_zero",
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.INFO + 1 if not verbose else logging.DEBUG)
    # NNI's experiment life cycle (config inferred, engine chosen, checkpoint saved, stopped) is ours to
    # run, not the user's to read; its warnings still show, except one it repeats for every one-shot
    # experiment about a setting we never set (sequential engines have no training service).
    for name in ("nni.experiment", "nni.nas.experiment"):
        logging.getLogger(name).setLevel(logging.WARNING if not verbose else logging.DEBUG)
    if not verbose:
        for message in _KNOWN_NOISE:
            warnings.filterwarnings("ignore", message=message)
    config_logger = logging.getLogger("nni.nas.experiment.config.experiment")
    if not verbose and not any(isinstance(f, _UnsetTrainingService) for f in config_logger.filters):
        config_logger.addFilter(_UnsetTrainingService())


#: Warnings about Lightning's own internals that a user cannot act on: task modules log their metrics
#: through ``self.log`` also when our Fabric loop (not a Trainer) runs them, and Lightning 2.x calls a
#: torch pytree API that torch 2.13 deprecates. ``--verbose`` shows them.
_KNOWN_NOISE = (
    r"You are trying to `self\.log\(\)` but the `self\.trainer` reference is not registered",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _UnsetTrainingService(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "`training_service` will be ignored" not in record.getMessage()

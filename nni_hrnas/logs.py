"""Command-line logging: the ``nni_hrnas`` loggers write to standard error, whatever else is set up."""

from __future__ import annotations

import logging
import sys


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

"""Opening Optuna storages from a URL, with errors that say what to do."""

from __future__ import annotations

import warnings

import optuna

JOURNAL_PREFIX = "journal:"

#: How often a trial of a killed worker is run again (with the same parameters) before it stays FAIL.
MAX_RETRY = 1


def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Optuna's retry of a failed trial: a WAITING copy with the same parameters and user attributes."""
    return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def open_storage(url: str, heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``.

    ``sqlite:///study.db``, ``postgresql://user:pass@host/db`` (any SQLAlchemy URL) or
    ``journal:PATH`` (a journal file, good for many processes on one machine or NFS).
    ``heartbeat`` (seconds, SQL storages only: Optuna's journal has none) makes every running trial
    beat; one silent for two intervals is marked FAIL and retried once by the next trial to start.

    Example:
        >>> storage = open_storage("sqlite:///:memory:")
    """
    if not isinstance(url, str) or not url:
        raise ValueError("storage URL is empty; use e.g. sqlite:///study.db or journal:study.log")
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = url[len(JOURNAL_PREFIX) :]
        try:
            return JournalStorage(JournalFileBackend(path))
        except OSError as error:
            raise ValueError(
                f"cannot open journal storage {path!r}: {error}; check the folder exists and is writable"
            ) from error
    try:
        if heartbeat is None:
            return optuna.storages.RDBStorage(url)
        with warnings.catch_warnings():  # Optuna calls its heartbeat experimental; it is what we rely on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=retry_callback(),
            )
    except Exception as error:  # SQLAlchemy raises many kinds; all mean the URL cannot be used
        raise ValueError(
            f"cannot open Optuna storage {url!r}: {error}. Use a SQLAlchemy URL such as "
            "sqlite:///study.db or postgresql://user:password@host/database, or journal:PATH"
        ) from error

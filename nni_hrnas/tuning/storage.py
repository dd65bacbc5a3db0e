"""Opening Optuna storages from a URL, with errors that say what to do."""

from __future__ import annotations

import optuna

JOURNAL_PREFIX = "journal:"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``.

    ``sqlite:///study.db``, ``postgresql://user:pass@host/db`` (any SQLAlchemy URL) or
    ``journal:PATH`` (a journal file, good for many processes on one machine or NFS).

    Example:
        >>> storage = open_storage("sqlite:///:memory:")
    """
    if not isinstance(url, str) or not url:
        raise ValueError("storage URL is empty; use e.g. sqlite:///study.db or journal:study.log")
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = url[len(JOURNAL_PREFIX):]
        try:
            return JournalStorage(JournalFileBackend(path))
        except OSError as error:
            raise ValueError(f"cannot open journal storage {path!r}: {error}; check the folder exists "
                             "and is writable") from error
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # SQLAlchemy raises many kinds; all mean the URL cannot be used
        raise ValueError(f"cannot open Optuna storage {url!r}: {error}. Use a SQLAlchemy URL such as "
                         "sqlite:///study.db or postgresql://user:password@host/database, or journal:PATH") from error

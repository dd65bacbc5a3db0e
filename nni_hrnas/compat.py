"""The library's workarounds for NNI 3.0 (the space's own are in ``search_spaces/nni_patches.py``).

NNI is unmaintained (3.0, 2023, is its last release), so fixes cannot go upstream; each patch
below names the NNI code it corrects and why. :func:`apply` is idempotent and is called when
:mod:`nni_hrnas.strategy` is imported. Patches 1 to 3 make NNI's one-shot supermodules work on the
HR-NAS space; they live with the space (``search_spaces/nni_patches.py``), applied when it is
imported, so NNI's own strategies work on our spaces unchanged.

4. ``nni.nas.strategy`` binds NNI's one-shot strategies (DARTS, RandomOneShot, ...) with a
   try/except import; when ``nni.nas.oneshot.pytorch.strategy`` is the first of them imported,
   that import is circular, fails, and leaves placeholders ("ImportFailedStrategy") in
   ``nni.nas.strategy`` for the rest of the process. We bind the real classes again.
5. NNI's node server (the REST API and web UI of ``nnictl`` and of experiments started from
   Python) calls ``app.listen(port)`` (nni_node/rest_server/index.js, ``RestServer.start``): it
   listens on every interface, and NNI 3.0 has no option to choose the address, so anyone who
   can reach the machine can read and stop experiments. :func:`serve_nni_on` makes the node
   servers this process starts preload ``nni_loopback.js``, which binds a listen() that names no
   host to 127.0.0.1 (or the host asked for). ``hrnas nnictl`` applies it to nnictl; a plain
   ``nnictl`` still binds every interface (``hrnas check`` says so).
6. NNI tells a trial nothing of ``trialConcurrency`` (its environment holds the experiment id and
   the trial's folder only), yet concurrent trials on one machine must split its cores.
   :func:`nni_trial_concurrency` reads it from the experiment's profile, which NNI keeps in
   ``EXPERIMENT_DIR/db/nni.sqlite`` (table ``ExperimentProfile``, nni_node/core/sqlDatabase.js);
   the trial's folder (``NNI_SYS_DIR``) lies under ``EXPERIMENT_DIR`` (``environments/local-env/
   trials/TRIAL_ID`` with NNI 3.0's local training service, ``trials/TRIAL_ID`` with the legacy one).
7. Not a patch, a guard: NNI's experiment registry lock (``SimplePreemptiveLock`` in
   nni/tools/nnictl/common_utils.py) subclasses ``filelock.SoftFileLock`` and sets a private
   attribute that filelock 3.12 stopped reading, so with filelock 3.12 or later every experiment
   waits for that lock forever, silently (seen on a GPU machine whose image had filelock 4).
   NNI pins ``filelock<3.12`` and pip honours it; an environment assembled another way is refused
   with one line by :func:`check_filelock`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

_APPLIED = False

#: Patch 5's preload for NNI's node server.
LOOPBACK_JS = Path(__file__).with_name("nni_loopback.js")
#: The address NNI's servers bind unless told otherwise (``HRNAS_NNI_HOST``, ``hrnas nnictl --host``).
DEFAULT_NNI_HOST = "127.0.0.1"

#: RuntimeWarnings NNI 3.0 prints on import about torch modules newer than it knows.
warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*", category=RuntimeWarning)


def _rebind_one_shot_strategies() -> None:
    """Patch 4: put the real one-shot strategy classes back into ``nni.nas.strategy``."""
    import nni.nas.strategy as strategies
    import nni.nas.strategy.oneshot as oneshot
    from nni.nas.oneshot.pytorch import strategy as real

    for name in ("DARTS", "GumbelDARTS", "Proxyless", "ENAS", "RandomOneShot"):
        for module in (strategies, oneshot):
            if getattr(module, name, None) is not getattr(real, name):
                setattr(module, name, getattr(real, name))


def serve_nni_on(host: str | None = None) -> None:
    """Patch 5: NNI node servers started from this process (and its children) listen on ``host``.

    ``host`` defaults to ``$HRNAS_NNI_HOST`` or 127.0.0.1; ``0.0.0.0`` exposes them on every
    interface, as NNI does by itself. Works through the environment (``NODE_OPTIONS``), which NNI's
    launcher passes to the node process.
    """
    os.environ["HRNAS_NNI_HOST"] = host or os.environ.get("HRNAS_NNI_HOST") or DEFAULT_NNI_HOST
    option = f'--require "{LOOPBACK_JS}"'
    options = os.environ.get("NODE_OPTIONS", "")
    if option not in options:
        os.environ["NODE_OPTIONS"] = f"{options} {option}".strip()


def nni_trial_concurrency() -> int | None:
    """Patch 6: the running nnictl experiment's ``trialConcurrency``, or None outside one (or unreadable)."""
    import json
    import sqlite3

    trial_dir = os.environ.get("NNI_SYS_DIR")
    if not trial_dir:
        return None
    database = next(
        (d / "db" / "nni.sqlite" for d in Path(trial_dir).parents if (d / "db" / "nni.sqlite").is_file()),
        None,
    )
    if database is None:
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("select params from ExperimentProfile order by revision desc limit 1").fetchone()
        value = json.loads(row[0]).get("trialConcurrency") if row else None
    except (sqlite3.Error, ValueError, TypeError, IndexError):
        return None
    return value if isinstance(value, int) and value >= 1 else None


def check_filelock(version: str | None = None) -> None:
    """Guard 7: refuse a filelock with which NNI's experiments would wait forever on their lock."""
    if version is None:
        import filelock

        version = filelock.__version__
    major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if major_minor >= (3, 12):
        raise RuntimeError(
            f"filelock {version} is installed, but NNI 3.0 needs filelock<3.12 (with a later one every "
            "NNI experiment waits forever on its lock): pip install 'filelock<3.12'"
        )


def apply() -> None:
    """Install patches 4 and 5 and check guard 7 (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    check_filelock()
    _rebind_one_shot_strategies()
    serve_nni_on()  # Patch 5, for experiments this process starts (NasExperiment with a training service)
    _APPLIED = True

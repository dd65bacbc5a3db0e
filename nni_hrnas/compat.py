"""Every workaround for NNI 3.0, in one place.

NNI is unmaintained (3.0, 2023, is its last release), so fixes cannot go upstream; each patch
below names the NNI code it corrects and why. :func:`apply` is idempotent and is called when
:mod:`search_spaces` is imported, so NNI's own strategies work on our spaces unchanged.

1. ``MixedOperation.freeze`` loads ``{'bias': None}`` into a layer built with ``bias=False``, and
   ``load_state_dict`` rejects ``None`` (nni/nas/oneshot/pytorch/supermodule/operation.py,
   ``MixedOperation.freeze``): exporting a one-shot supernet with bias-free convs fails. We drop
   ``None`` entries, which is what the bias-free layer expects.
2. A depthwise conv whose width may be 0 (a removed kernel path) makes ``MixedConv2d`` evaluate
   ``in_channels / groups`` at 0 / 0 (``super_init_argument`` and ``_freeze_weight_impl``), a
   ZeroDivisionError. The ratio is 1 at every other width; we evaluate it over those.
3. Torch rejects a conv with 0 output channels, which path sampling (RandomOneShot) produces when
   it draws width 0. ``MixedConv2d`` then returns an empty (B, 0, H', W') map instead; the HR-NAS
   ops treat an empty intermediate as a removed path.
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
"""

from __future__ import annotations

import contextlib
import itertools
import os
import warnings
from pathlib import Path
from typing import Any

_APPLIED = False

#: Patch 5's preload for NNI's node server.
LOOPBACK_JS = Path(__file__).with_name("nni_loopback.js")
#: The address NNI's servers bind unless told otherwise (``HRNAS_NNI_HOST``, ``hrnas nnictl --host``).
DEFAULT_NNI_HOST = "127.0.0.1"

#: RuntimeWarnings NNI 3.0 prints on import about torch modules newer than it knows.
warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*", category=RuntimeWarning)


def _constant_ignoring_empty(expr: Any) -> Any:
    """``evaluate_constant`` over the options that do not divide by zero (patch 2)."""
    from nni.mutable import MutableExpression

    if not isinstance(expr, MutableExpression):
        return expr
    leaves = expr.simplify()
    labels = list(leaves)
    values = set()
    for combo in itertools.product(*(leaves[label].values for label in labels)):
        try:
            values.add(expr.freeze(dict(zip(labels, combo, strict=True))))
        except ZeroDivisionError:
            continue
    if len(values) != 1:
        raise ValueError(f"{expr} is not evaluated to a constant. All possible values are: {sorted(values)}")
    return values.pop()


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


def apply() -> None:
    """Install the patches (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _rebind_one_shot_strategies()
    serve_nni_on()  # Patch 5, for experiments this process starts (NasExperiment with a training service)
    from nni.nas.oneshot.pytorch.supermodule import operation

    # Patch 1: bias=False freeze.
    def freeze(self, sample):
        arguments = {**self.init_arguments}
        for name, mutable in self.mutable_arguments.items():
            arguments[name] = mutable.freeze(sample)
        frozen = self.bound_type(**arguments)
        state = {k: v for k, v in self.freeze_weight(**arguments).items() if v is not None}
        frozen.load_state_dict(state)
        return frozen

    operation.MixedOperation.freeze = freeze

    # Patch 2: 0 / 0 in depthwise ratio evaluation; the module-level name is what operation.py calls.
    operation.evaluate_constant = _constant_ignoring_empty

    # Patch 3: a conv sampled to zero output channels.
    original_forward = operation.MixedConv2d.forward_with_args

    def forward_with_args(
        self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, inputs
    ):
        if (isinstance(out_channels, int) and out_channels == 0) or inputs.shape[1] == 0:
            k = kernel_size if isinstance(kernel_size, int) else self.kernel_size[0]
            s = stride if isinstance(stride, int) else stride[0]
            h, w = ((d + 2 * (k // 2) - k) // s + 1 for d in inputs.shape[-2:])
            return inputs.new_zeros(inputs.shape[0], 0, h, w)
        return original_forward(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, inputs
        )

    operation.MixedConv2d.forward_with_args = forward_with_args
    _APPLIED = True

"""An NNI tuner over Optuna's ask/tell interface.

Use it from an nnictl config (``tuner: {codeDirectory, className, classArgs}``)::

    tuner:
      className: nni_hrnas.tuning.OptunaTuner
      classArgs: {objectives: multi, sampler: nsga2, storage: "sqlite:///hrnas.db"}

With ``objectives: multi`` a trial's final result dict ``{'default': metric, 'macs': ...}`` is
told as two objectives (metric up, MACs down); with ``single`` only the metric is optimised and
``macs_limit`` becomes a constraint. Failed trials are told as failed; ``nnictl resume`` replays
the history through :meth:`OptunaTuner.import_data`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from nni.tuner import Tuner
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from .storage import open_storage

_log = logging.getLogger(__name__)

OBJECTIVES = ("multi", "single")
SAMPLERS = ("nsga2", "tpe", "random")


def to_optuna_distribution(name: str, spec: dict) -> BaseDistribution:
    """Convert one NNI search-space entry (``{'_type': ..., '_value': ...}``) to an Optuna distribution."""
    kind, values = spec.get("_type"), spec.get("_value")
    if not isinstance(values, list) or not values:
        raise ValueError(f"search space entry {name!r}: _value must be a non-empty list, got {values!r}")
    if kind == "choice":
        return CategoricalDistribution(values)
    if kind in ("uniform", "loguniform", "quniform", "randint"):
        low, high = values[0], values[1] if len(values) > 1 else None
        if high is None or not low < high:
            raise ValueError(
                f"search space entry {name!r}: empty range {values!r}; expected [low, high] with low < high"
            )
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"search space entry {name!r}: loguniform needs low > 0, got {low}")
        if name in ("lambda", "eps") and low < 0:
            raise ValueError(f"search space entry {name!r}: must not be negative, got {values!r}")
        if kind == "randint":
            return IntDistribution(int(low), int(high) - 1)
        if kind == "quniform":
            return FloatDistribution(low, high, step=values[2])
        return FloatDistribution(low, high, log=kind == "loguniform")
    raise ValueError(
        f"search space entry {name!r}: type {kind!r} is not supported; use choice, uniform, "
        "loguniform, quniform or randint"
    )


class OptunaTuner(Tuner):
    """NNI tuner backed by an Optuna study.

    Args:
        objectives: ``multi`` (metric maximised, MACs minimised) or ``single`` (metric maximised).
        sampler: ``nsga2``, ``tpe`` or ``random``.
        storage: an Optuna storage URL (see :func:`~nni_hrnas.tuning.open_storage`); in memory if None.
        study_name: the study to create or continue.
        macs_limit: with ``single``, trials above this many MACs are infeasible.
        seed: sampler seed.
    """

    def __init__(
        self,
        objectives: str = "multi",
        sampler: str = "nsga2",
        storage: str | None = None,
        study_name: str = "hrnas",
        macs_limit: float | None = None,
        seed: int | None = None,
    ) -> None:
        if objectives not in OBJECTIVES:
            raise ValueError(f"objectives must be one of {OBJECTIVES}, got {objectives!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        self.objectives, self.macs_limit = objectives, macs_limit
        directions = ["maximize", "minimize"] if objectives == "multi" else ["maximize"]
        samplers = {
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        }
        self.study = optuna.create_study(
            storage=open_storage(storage) if storage else None,
            study_name=study_name,
            directions=directions,
            sampler=samplers[sampler](),
            load_if_exists=True,
        )
        self.distributions: dict[str, BaseDistribution] = {}
        self.trials: dict[int, optuna.Trial] = {}

    def update_search_space(self, search_space: dict) -> None:
        """NNI's search space (the config's ``searchSpace``) as Optuna distributions."""
        self.distributions = {name: to_optuna_distribution(name, spec) for name, spec in search_space.items()}

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict:
        """The next trial's parameters: one ``study.ask`` (the Optuna trial keeps NNI's parameter id)."""
        if not self.distributions:
            raise RuntimeError(
                "the search space is empty: give lambda and eps ranges in the config's searchSpace"
            )
        trial = self.study.ask(self.distributions)
        trial.set_user_attr("nni_parameter_id", parameter_id)
        self.trials[parameter_id] = trial
        return dict(trial.params)

    def _values(self, value: Any) -> tuple[list[float] | float, dict]:
        result = value if isinstance(value, dict) else {"default": value}
        metric = float(result["default"])
        if self.objectives == "multi":
            if "macs" not in result:
                raise ValueError("a multi-objective trial must report {'default': metric, 'macs': ...}")
            return [metric, float(result["macs"])], result
        return metric, result

    def receive_trial_result(self, parameter_id: int, parameters: dict, value: Any, **kwargs: Any) -> None:
        """``study.tell`` the trial's final result (the metric, and MACs when multi-objective); a value that
        is not finite fails the trial."""
        trial = self.trials.pop(parameter_id, None)
        if trial is None:
            _log.warning("result for unknown parameter id %s ignored", parameter_id)
            return
        values, result = self._values(value)
        for key in ("macs", "params", "arch", "search_seconds"):
            if key in result:
                trial.set_user_attr(key, result[key])
        if self.macs_limit is not None and "macs" in result:
            trial.set_constraint(
                "macs_over_limit", float(result["macs"]) - self.macs_limit
            )  # > 0: infeasible
        if any(not math.isfinite(v) for v in (values if isinstance(values, list) else [values])):
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        self.study.tell(trial, values)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        """A trial that ended without a final result (failed or killed) is told FAIL."""
        trial = self.trials.pop(parameter_id, None)
        if trial is not None:  # ended without a final result: failed or killed
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def import_data(self, data: list) -> None:
        """Replay finished trials (``nnictl resume``) that the study does not hold yet."""
        import nni

        known = {
            (tuple(sorted(t.params.items())), tuple(t.values or ()))
            for t in self.study.trials
            if t.state == optuna.trial.TrialState.COMPLETE
        }
        added = 0
        for record in data:
            if isinstance(record, str):
                record = nni.load(record)
            value = record["value"]
            if isinstance(value, str):
                value = nni.load(value)
            values, result = self._values(value)
            values = values if isinstance(values, list) else [values]
            params = record["parameter"]
            if (tuple(sorted(params.items())), tuple(values)) in known:
                continue
            distributions = {k: self.distributions[k] for k in params if k in self.distributions}
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions=distributions,
                    values=values,
                    user_attrs={k: result[k] for k in ("macs", "params") if k in result},
                )
            )
            added += 1
        _log.info("replayed %d finished trials into study %r", added, self.study.study_name)

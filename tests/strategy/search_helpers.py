"""Short HR-NAS searches on the `tiny` preset, shared by the tests and the resume worker."""

from __future__ import annotations

from nni.nas.execution import SequentialExecutionEngine
from nni.nas.space import RawFormatModelSpace
from tiny_data import tiny_evaluator

from nni_hrnas.strategy import ProgressiveShrinking
from search_spaces import HRNASSpace

# SGD: the penalty's pull on a gamma is proportional to lambda, so a short search separates lambdas.
EVALUATOR = dict(n_train=96, n_val=32, batch_size=16, optimizer="sgd", learning_rate=0.1, schedule="constant")
STRATEGY = dict(eps=1e-3, prune_every=1, epochs=3, recalibration_batches=2, ema_decay=0.9)


def tiny_search(evaluator=None, evaluator_kwargs=None, **kwargs) -> ProgressiveShrinking:
    """Run a search on `tiny` with the strategy alone (NNI's sequential engine, no experiment)."""
    space = HRNASSpace.from_preset("tiny")
    evaluator = evaluator or tiny_evaluator(**{**EVALUATOR, **(evaluator_kwargs or {})})
    strategy = ProgressiveShrinking(**{**STRATEGY, **kwargs})
    strategy.initialize(RawFormatModelSpace(space, evaluator), SequentialExecutionEngine())
    strategy.run()
    return strategy

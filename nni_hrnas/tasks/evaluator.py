"""The evaluator every task hands to NNI: its ``Lightning`` evaluator, reusable across trials."""

from __future__ import annotations

import nni
from nni.nas.evaluator.pytorch import Lightning


@nni.trace  # evaluators must be traceable: NNI re-creates and serialises them
class TaskEvaluator(Lightning):
    """NNI's ``Lightning`` evaluator that can evaluate one architecture after another.

    NNI's multi-trial engines (the sequential one in-process) call ``evaluate`` on the same
    evaluator for every trial. A Lightning ``Trainer`` that has reached ``max_epochs`` does not
    train again, so every trial after the first would be reported untrained, with the first
    trial's metric. Each ``evaluate`` after the first therefore runs on a fresh ``Trainer`` built
    from the same (traced) arguments; the task module starts a fresh history in ``on_fit_start``.
    """

    def evaluate(self, model):
        trainer = self.trainer
        if trainer.state.finished or trainer.fit_loop.epoch_progress.current.processed:
            self.trainer = trainer.trace_symbol(*trainer.trace_args, **trainer.trace_kwargs)
        return super().evaluate(model)

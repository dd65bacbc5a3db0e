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
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

_APPLIED = False

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


def apply() -> None:
    """Install the patches (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _rebind_one_shot_strategies()
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

    def forward_with_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, inputs):
        if (isinstance(out_channels, int) and out_channels == 0) or inputs.shape[1] == 0:
            k = kernel_size if isinstance(kernel_size, int) else self.kernel_size[0]
            s = stride if isinstance(stride, int) else stride[0]
            h, w = ((d + 2 * (k // 2) - k) // s + 1 for d in inputs.shape[-2:])
            return inputs.new_zeros(inputs.shape[0], 0, h, w)
        return original_forward(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                                inputs)

    operation.MixedConv2d.forward_with_args = forward_with_args
    _APPLIED = True

"""NNI 3.0's one-shot supermodules made to work on this space; applied when :mod:`search_spaces.hrnas` is imported.

NNI is unmaintained (3.0, 2023, is its last release), so fixes cannot go upstream; each patch names
the NNI code it corrects and why. These are the patches NNI's own one-shot strategies (DARTS,
RandomOneShot, ...) need on the HR-NAS space; the other NNI 3.0 workarounds (the strategies' import,
the web server's address, a trial's concurrency) are the library's: ``nni_hrnas/compat.py``.

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
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

_APPLIED = False

#: RuntimeWarnings NNI 3.0 prints on import about torch modules newer than it knows (the space imports
#: NNI; ``nni_hrnas.compat`` sets the same filter for the library's own imports of NNI).
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


def apply() -> None:
    """Install patches 1 to 3 (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
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

"""Choice labels of the HR-NAS space: built and parsed here, and nowhere else.

A choice label is ``{block}_{choice}``.

* ``block`` says where a searching block sits: ``p{stage}_b{branch}_n{index}`` in a parallel module,
  ``f{stage}_o{out}_i{in}`` in the fusion before module ``stage`` (output branch ``out`` from input
  branch ``in``), ``head`` (the dense-prediction head), ``cls_b{branch}`` and ``cls_d{index}`` (the
  classification head's per-branch and downsampling blocks).
* ``choice`` is ``k{K}``, the width of the block's kernel path of kernel size K (any K the space is
  configured with), or ``tok``, the number of tokens of its transformer.

>>> label = choice_label(parallel_block(1, 0, 2), kernel_choice(5))
>>> label, split_label(label), kernel_size(label)
('p1_b0_n2_k5', ('p1_b0_n2', 'k5'), 5)
>>> parse_block("f2_o1_i0")
BlockPlace(kind='fusion', stage=2, branch=1, index=0)
"""

from __future__ import annotations

import re
from typing import NamedTuple

TOKENS = "tok"
HEAD = "head"

_CHOICE = re.compile(r"k(?P<kernel>[1-9]\d*)|tok")
_BLOCK = re.compile(
    r"p(?P<ps>\d+)_b(?P<pb>\d+)_n(?P<pn>\d+)|f(?P<fs>\d+)_o(?P<fo>\d+)_i(?P<fi>\d+)"
    r"|head|cls_b(?P<cb>\d+)|cls_d(?P<cd>\d+)"
)


class BlockPlace(NamedTuple):
    """Where a block sits. ``kind``: 'parallel', 'fusion', 'head', 'cls_branch' or 'cls_down';
    ``stage`` (-1 for the heads), ``branch`` (the output branch of a fusion), ``index`` (the block in
    its branch, a fusion's input branch, the classification head's downsampling step)."""

    kind: str
    stage: int
    branch: int
    index: int


def parallel_block(stage: int, branch: int, index: int) -> str:
    """The block ``index`` of branch ``branch`` in parallel module ``stage``: ``p{stage}_b{branch}_n{index}``."""
    return f"p{stage}_b{branch}_n{index}"


def fusion_block(stage: int, out_branch: int, in_branch: int) -> str:
    """The fusion block before module ``stage`` from ``in_branch`` to ``out_branch``: ``f{stage}_o{out}_i{in}``."""
    return f"f{stage}_o{out_branch}_i{in_branch}"


def cls_branch_block(branch: int) -> str:
    """The classification head's block on branch ``branch``: ``cls_b{branch}``."""
    return f"cls_b{branch}"


def cls_down_block(index: int) -> str:
    """The classification head's downsampling block ``index``: ``cls_d{index}``."""
    return f"cls_d{index}"


def kernel_choice(kernel: int) -> str:
    """The choice name of the kernel path of size ``kernel`` (also its key in ``SearchingBlock.paths``)."""
    return f"k{int(kernel)}"


def choice_label(block: str, choice: str) -> str:
    """The label of ``choice`` (``k{K}`` or ``tok``) of ``block``: ``{block}_{choice}``."""
    return f"{block}_{choice}"


def split_label(label: str) -> tuple[str, str]:
    """``(block, choice)`` of a choice label; ``ValueError`` naming the label if it is not one."""
    block, sep, choice = str(label).rpartition("_")
    if not sep or not _CHOICE.fullmatch(choice) or not _BLOCK.fullmatch(block):
        raise ValueError(
            f"{label!r} is not a choice label ('{{block}}_k{{K}}' or '{{block}}_tok', e.g. 'p1_b0_n0_k3')"
        )
    return block, choice


def is_label(label: str) -> bool:
    """Whether ``label`` is a choice label of the space (see :func:`split_label`)."""
    try:
        split_label(label)
    except ValueError:
        return False
    return True


def is_kernel_choice(choice: str) -> bool:
    """Whether ``choice`` is a kernel path's choice name (``k{K}``)."""
    return str(choice) != TOKENS and _CHOICE.fullmatch(str(choice)) is not None


def is_tokens(label: str) -> bool:
    """Whether ``label`` (or a bare choice name) is a transformer's token count."""
    return str(label) == TOKENS or str(label).endswith("_" + TOKENS)


def kernel_size(label_or_choice: str) -> int | None:
    """The kernel size of a kernel-path label or choice name; None for tokens."""
    choice = str(label_or_choice).rpartition("_")[2]
    match = _CHOICE.fullmatch(choice)
    if match is None:
        raise ValueError(f"{label_or_choice!r} is not a choice label or choice name (k{{K}} or tok)")
    return int(match["kernel"]) if match["kernel"] else None


def parse_block(block: str) -> BlockPlace:
    """Where ``block`` sits; ``ValueError`` if it is not a block label."""
    m = _BLOCK.fullmatch(str(block))
    if m is None:
        raise ValueError(
            f"{block!r} is not a block label (p{{s}}_b{{b}}_n{{i}}, f{{s}}_o{{o}}_i{{i}}, head, "
            "cls_b{b} or cls_d{i})"
        )
    if m["ps"] is not None:
        return BlockPlace("parallel", int(m["ps"]), int(m["pb"]), int(m["pn"]))
    if m["fs"] is not None:
        return BlockPlace("fusion", int(m["fs"]), int(m["fo"]), int(m["fi"]))
    if m["cb"] is not None:
        return BlockPlace("cls_branch", -1, int(m["cb"]), 0)
    if m["cd"] is not None:
        return BlockPlace("cls_down", -1, 0, int(m["cd"]))
    return BlockPlace("head", -1, 0, 0)

"""Settings declared once: a dataclass field whose metadata gives its flag, its parsing and its check.

A settings dataclass (e.g. :class:`nni_hrnas.search.SearchSettings`) declares each setting as
``name: type = setting(default, help=..., check=...)``. From those fields, and nothing else:

- :func:`add_arguments` adds the ``argparse`` flags (``--shrink-epochs`` for ``shrink_epochs``;
  the flag name, type, metavar, group come from the metadata);
- :func:`from_args` maps parsed flags (or any mapping such as an NNI tuner's parameters) back to
  keyword arguments of the dataclass, running each value's ``from_cli`` conversion;
- :func:`check` validates an instance: ``invalid NAME=VALUE: EXPECTED`` for the first bad value;
- :func:`forwarded` gives the values a setting marks as passed on under the same name (the
  strategy's constructor arguments).

A small helper rather than jsonargparse: it adds no dependency, keeps the flag names and help
texts the README documents exactly, and the settings stay plain dataclasses.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

_KEY = "setting"


@dataclass(frozen=True)
class Check:
    """A check of one value: ``ok(value)`` is true when it is allowed; ``expected`` says what is."""

    ok: Callable[[Any], bool]
    expected: str

    def or_none(self) -> Check:
        """The same check, with ``None`` (the setting left to its default meaning) allowed too."""
        return Check(lambda v: v is None or self.ok(v), self.expected)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    """An int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int, note: str = "") -> Check:
    """An integer >= ``low``; ``note`` is added to the message in parentheses."""
    return Check(
        lambda v: is_integer(v) and v >= low, f"expected an integer >= {low}{f' ({note})' if note else ''}"
    )


def number(low: float) -> Check:
    """A finite number >= ``low``."""
    return Check(lambda v: is_number(v) and v >= low, f"expected a number >= {low:g}")


def positive(expected: str = "expected a positive number") -> Check:
    """A finite number > 0; ``expected`` says what the error expects (e.g. a number of MACs)."""
    return Check(lambda v: is_number(v) and v > 0, expected)


def one_of(*values: Any) -> Check:
    """One of ``values``."""
    return Check(lambda v: v in values, f"expected {' or '.join(map(str, values))}")


@dataclass(frozen=True)
class Setting:
    """The metadata of one setting (see :func:`setting`)."""

    help: str | None = None
    flag: str | None = None
    check: Check | None = None
    type: Callable[[str], Any] | None = None
    from_cli: Callable[[Any], Any] | None = None
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None
    action: str | None = None
    cli: bool = True
    group: str | None = None
    forward: bool = False


def setting(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    help: str | None = None,  # noqa: A002
    flag: str | None = None,
    check: Check | None = None,
    type: Callable[[str], Any] | None = None,  # noqa: A002
    from_cli: Callable[[Any], Any] | None = None,
    metavar: str | None = None,
    choices: tuple[Any, ...] | None = None,
    action: str | None = None,
    cli: bool = True,
    group: str | None = None,
    forward: bool = False,
) -> Any:
    """A dataclass field declaring one setting.

    Args:
        default, default_factory: as :func:`dataclasses.field`.
        help: the flag's help text (``None`` with ``cli=True``: argparse prints no help line).
        flag: the flag when it is not ``--`` + the name with dashes (e.g. ``--lambda`` for ``lambda_``);
            ``--no-x`` with ``action='store_false'`` for a boolean that defaults to True.
        check: what a valid value is (:class:`Check`); :func:`check` runs it.
        type: argparse's conversion of the flag's text (int, float, ...).
        from_cli: a conversion of the parsed value (e.g. ``KEY=VALUE`` items to a dict) run by
            :func:`from_args`; it may raise the settings' own error naming the flag.
        metavar, choices, action: passed to ``argparse.add_argument``.
        cli: False for a setting without a flag (set from Python only).
        group: the argparse argument group the flag is listed under (its title).
        forward: passed on under the same name by :func:`forwarded` (the strategy's constructor).
    """
    meta = {
        _KEY: Setting(
            help=help,
            flag=flag,
            check=check,
            type=type,
            from_cli=from_cli,
            metavar=metavar,
            choices=choices,
            action=action,
            cli=cli,
            group=group,
            forward=forward,
        )
    }
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def public_name(name: str) -> str:
    """The name users see: the field's name without the trailing underscore (``lambda_`` -> ``lambda``)."""
    return name.rstrip("_")


def settings_of(cls_or_obj: Any) -> Iterator[tuple[dataclasses.Field, Setting]]:
    """The declared settings of a dataclass, in declaration order."""
    for f in dataclasses.fields(cls_or_obj):
        if _KEY in f.metadata:
            yield f, f.metadata[_KEY]


def flag_of(f: dataclasses.Field, meta: Setting) -> str:
    """The command-line flag of a setting."""
    return meta.flag or "--" + public_name(f.name).replace("_", "-")


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    groups: tuple[str | None, ...] | None = None,
    exclude: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
) -> argparse.ArgumentParser:
    """Add the flags of ``cls``'s settings to ``parser``; a setting without a default is a required flag.

    ``groups`` (default: all) keeps the settings of those groups (``None``: the ungrouped ones);
    ``exclude`` leaves out settings by field name, ``only`` (default: all) keeps those named.
    """
    sections: dict[str, Any] = {}
    for f, meta in settings_of(cls):
        if not meta.cli or f.name in exclude or (groups is not None and meta.group not in groups):
            continue
        if only is not None and f.name not in only:
            continue
        target: Any = parser
        if meta.group is not None:
            if meta.group not in sections:
                sections[meta.group] = parser.add_argument_group(meta.group)
            target = sections[meta.group]
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta.help}
        if f.default is MISSING and f.default_factory is MISSING:
            kwargs["required"] = True
        elif meta.action == "append":
            kwargs["default"] = []
        elif meta.action in ("store_true", "store_false"):
            kwargs["default"] = f.default
        elif f.default is not MISSING:
            kwargs["default"] = f.default
        else:  # a default_factory: an absent flag leaves the attribute out, so the factory applies
            kwargs["default"] = argparse.SUPPRESS
        for key in ("type", "metavar", "choices", "action"):
            if getattr(meta, key) is not None:
                kwargs[key] = getattr(meta, key)
        target.add_argument(flag_of(f, meta), **kwargs)
    return parser


def from_args(
    cls: type, values: argparse.Namespace | Mapping[str, Any], *, public: bool = False
) -> dict[str, Any]:
    """Keyword arguments of ``cls`` from parsed flags (or a mapping), each through its ``from_cli``.

    Settings absent from ``values`` are left out (the dataclass's default then applies); a number is
    converted to the flag's type when that loses nothing (an int setting given 2.0 gets 2). With
    ``public=True`` the keys of a mapping are the public names (``lambda`` for ``lambda_``), as an
    NNI tuner's parameters are.
    """
    items = vars(values) if isinstance(values, argparse.Namespace) else dict(values)
    kwargs: dict[str, Any] = {}
    for f, meta in settings_of(cls):
        key = public_name(f.name) if public else f.name
        if key not in items:
            continue
        value = _coerce(meta.type, items[key])
        kwargs[f.name] = meta.from_cli(value) if meta.from_cli is not None else value
    return kwargs


def _coerce(kind: Callable[[str], Any] | None, value: Any) -> Any:
    """A number of a mapping (a tuner's 2.0 for an int setting, 1 for a float one) as the flag's type would give it."""
    if kind is float and is_number(value):
        return float(value)
    if kind is int and is_number(value) and float(value).is_integer():
        return int(value)
    return value


def unknown_keys(cls: type, keys: Mapping[str, Any] | set[str], *, public: bool = True) -> list[str]:
    """The keys that name no setting of ``cls`` (public names by default)."""
    names = {public_name(f.name) if public else f.name for f, _ in settings_of(cls)}
    return sorted(set(keys) - names)


def check(obj: Any, error: type[Exception] = ValueError) -> None:
    """Raise ``error('invalid NAME=VALUE: EXPECTED')`` for the first setting of ``obj`` that fails its check."""
    for f, meta in settings_of(obj):
        value = getattr(obj, f.name)
        if meta.check is not None and not meta.check.ok(value):
            raise error(f"invalid {public_name(f.name)}={value!r}: {meta.check.expected}")


def forwarded_names(cls: type) -> list[str]:
    """The field names of the settings marked ``forward=True``."""
    return [f.name for f, meta in settings_of(cls) if meta.forward]


def forwarded(obj: Any) -> dict[str, Any]:
    """The values of the settings marked ``forward=True``, by field name."""
    return {f.name: getattr(obj, f.name) for f, meta in settings_of(obj) if meta.forward}

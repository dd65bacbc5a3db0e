"""Hostile inputs, counted: every kind of bad file or value a user can feed us gets one clear line.

Each row builds one bad input and feeds it through the entry point a user would use (``hrnas``'s
main, in-process, or the data set / checkpoint reader that ``hrnas search`` calls and whose
errors it prints as one line). The answer must be exit status 2 (or an error of a type the CLI
prints) with a single line naming the input, no traceback, and every file that existed before
byte-for-byte unchanged.
"""

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from data_layouts import cityscapes_root, coco_root  # noqa: E402, F401

from nni_hrnas.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: what ``hrnas search`` prints as "hrnas search: error: ..." (nni_hrnas/search.py, cmd_search)
CLI_PRINTED = (ValueError, FileNotFoundError, RuntimeError)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---- builders: each writes its bad input under tmp and returns the argv or a callable ----------------------------


def digits_arch() -> dict[str, int]:
    from search_spaces import choice_maxima, get_preset

    return choice_maxima(get_preset("digits_seg"))


def arch_file(tmp: Path, content) -> list[str]:
    path = tmp / "arch.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return ["flops", "--preset", "digits_seg", "--arch", str(path)]


def arch_with(**change) -> callable:
    def build(tmp, request):
        arch = digits_arch()
        label = next(iter(arch))
        arch[label] = change["value"](arch[label]) if "value" in change else arch[label]
        if change.get("extra"):
            arch["stage9_b0_k3"] = 4
        if change.get("drop"):
            del arch[label]
        return arch_file(tmp, arch)

    return build


def run_folder(tmp: Path) -> Path:
    """A searched run folder as hrnas search writes it (digits_seg supernet, untrained)."""
    from nni_hrnas.strategy.checkpoint import save_searched
    from search_spaces import HRNASNetwork, get_preset

    config, arch = get_preset("digits_seg"), digits_arch()
    model = HRNASNetwork(config, arch)
    save_searched(
        tmp / "run",
        arch,
        model,
        {"config": dataclasses.asdict(config), "arch": arch, "macs": 1, "metric": 0.5},
    )
    return tmp / "run"


def export_with(edit) -> callable:
    def build(tmp, request):
        run = run_folder(tmp)
        edit(run)
        return ["export", str(run), "--out", str(tmp / "exported")]

    return build


def edit_result(change):
    def edit(run):
        result = json.loads((run / "result.json").read_text())
        change(result)
        (run / "result.json").write_text(json.dumps(result))

    return edit


def truncate(name: str):
    return lambda run: (run / name).write_bytes((run / name).read_bytes()[:100])


def weights_of_another_space(run: Path) -> None:
    from safetensors.torch import save_file

    from search_spaces import HRNASNetwork, choice_maxima, get_preset

    tiny = get_preset("tiny")
    save_file(HRNASNetwork(tiny, choice_maxima(tiny)).state_dict(), str(run / "model.safetensors"))


def weights_without_the_classifier(run: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(run / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("classifier.")}, str(run / "model.safetensors")
    )


def check_config(mutate) -> callable:
    def build(tmp, request):
        data = yaml.safe_load((ROOT / "experiments" / "digits.yml").read_text())
        data = mutate(data)
        path = tmp / "config.yml"
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return ["check", str(path)]

    return build


def updated(data: dict, **changes) -> dict:
    return {**data, **changes}


def checkpoint(kind: str) -> callable:
    def build(tmp, request):
        from nni_hrnas.strategy.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint

        path = tmp / "search_checkpoint.pt"
        fingerprint = {"preset": "digits_seg", "seed": 0}
        save_checkpoint(path, {"fingerprint": fingerprint, "weights": {"w": torch.ones(3)}})
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:200])
        elif kind == "another search":
            fingerprint = {"preset": "digits_cls", "seed": 0}
        elif kind == "another version":
            torch.save({"format": CHECKPOINT_FORMAT + 1, "fingerprint": fingerprint}, path)
        elif kind == "pickled code":
            torch.save(
                {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "x": Planted(tmp / "ran")}, path
            )
        return lambda: load_checkpoint(path, fingerprint)

    return build


class Planted:
    """An object whose unpickling would create a file: loading must not execute it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def cityscapes(edit) -> callable:
    def build(tmp, request):
        from nni_hrnas.data.cityscapes import Cityscapes

        root = request.getfixturevalue("cityscapes_root")
        edit(root)
        return lambda: Cityscapes(str(root), "val")[0]

    return build


def first_val_pair(root: Path) -> tuple[Path, Path]:
    image = sorted((root / "leftImg8bit" / "val").rglob("*.png"))[0]
    label = Path(
        str(image).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    )
    return image, label


def coco(edit) -> callable:
    def build(tmp, request):
        from nni_hrnas.data.coco_keypoints import COCOKeypoints

        root = request.getfixturevalue("coco_root")
        ann = root / "annotations" / "person_keypoints_val2017.json"
        data = json.loads(ann.read_text())
        edit(data)
        ann.write_text(json.dumps(data))
        return lambda: COCOKeypoints(str(root), "val")

    return build


def label_map(value, size=None):
    def edit(root):
        image, label = first_val_pair(root)
        shape = size or np.asarray(Image.open(label)).shape
        Image.fromarray(np.full(shape, value, np.uint8), mode="L").save(label)

    return edit


def empty_split(root: Path) -> None:
    """The val split's folders exist but hold no files (the data sets here list splits as folders)."""
    for path in [*(root / "leftImg8bit" / "val").rglob("*.png"), *(root / "gtFine" / "val").rglob("*.png")]:
        path.unlink()


CASES = {
    # arch.json (hrnas flops --arch; the same reader serves every command taking an architecture)
    "arch: not JSON": (lambda tmp, r: arch_file(tmp, '{"stage1'), "not valid JSON"),
    "arch: a list": (lambda tmp, r: arch_file(tmp, [1, 2]), "arch"),
    "arch: unknown label": (arch_with(extra=True), "stage9_b0_k3"),
    "arch: missing label": (arch_with(drop=True), "arch"),
    "arch: width above the grid": (arch_with(value=lambda v: v + 1000), "arch"),
    "arch: negative width": (arch_with(value=lambda v: -1), "arch"),
    "arch: non-integer width": (arch_with(value=lambda v: v - 0.5), "arch"),
    "arch: width as a string": (arch_with(value=str), "arch"),
    "arch: another space": (
        lambda tmp, r: arch_file(
            tmp, __import__("search_spaces").choice_maxima(__import__("search_spaces").get_preset("tiny"))
        ),
        "arch",
    ),
    # result.json and weights of a run folder (hrnas export)
    "result: not JSON": (export_with(truncate("result.json")), "result.json"),
    "result: no config": (export_with(edit_result(lambda r: r.pop("config"))), "config"),
    "result: config of the wrong type": (
        export_with(edit_result(lambda r: r.update(config="digits"))),
        "config",
    ),
    "result: config with an unknown field": (
        export_with(edit_result(lambda r: r["config"].update(colour=1))),
        "colour",
    ),
    "weights: truncated": (export_with(truncate("model.safetensors")), "model.safetensors"),
    "weights: of another space": (export_with(weights_of_another_space), "model.safetensors"),
    "weights: a layer missing": (export_with(weights_without_the_classifier), "missing: classifier.weight"),
    "run: arch of another space": (
        export_with(
            lambda run: (run / "arch.json").write_text(
                json.dumps(
                    __import__("search_spaces").choice_maxima(__import__("search_spaces").get_preset("tiny"))
                )
            )
        ),
        "arch",
    ),
    # nnictl configs (hrnas check on mutations of experiments/digits.yml)
    "nnictl: not YAML": (check_config(lambda d: "trialConcurrency: [1,\n"), "YAML"),
    "nnictl: a list": (check_config(lambda d: [d]), "mapping"),
    "nnictl: misspelt key": (check_config(lambda d: updated(d, trialConcurency=2)), "trialConcurrency"),
    "nnictl: wrong type": (check_config(lambda d: updated(d, trialConcurrency="two")), "trial_concurrency"),
    "nnictl: no eps in the search space": (
        check_config(lambda d: updated(d, searchSpace={"lambda": d["searchSpace"]["lambda"]})),
        "eps",
    ),
    "nnictl: unknown task": (
        check_config(lambda d: updated(d, trialCommand="python -m nni_hrnas.trial --task nosuch")),
        "nosuch",
    ),
    # command-line values
    "cli: study with 0 workers": (
        lambda tmp, r: ["study", "--task", "digits_seg", "--workers", "0"],
        "workers",
    ),
    "cli: study with 0 threads": (
        lambda tmp, r: ["study", "--task", "digits_seg", "--threads", "0"],
        "threads",
    ),
    "cli: study heartbeat 0": (
        lambda tmp, r: ["study", "--task", "digits_seg", "--heartbeat", "0"],
        "heartbeat",
    ),
    "cli: unknown preset": (lambda tmp, r: ["flops", "--preset", "nosuch"], "nosuch"),
    "cli: input of zero size": (
        lambda tmp, r: ["flops", "--preset", "digits_seg", "--input", "1x0x64"],
        "input",
    ),
    "cli: search of an unknown task": (
        lambda tmp, r: ["search", "--task", "nosuch", "--out", str(tmp / "o")],
        "nosuch",
    ),
    "cli: search with negative epochs": (
        lambda tmp, r: ["search", "--task", "digits_seg", "--epochs", "-1", "--out", str(tmp / "o")],
        "epochs",
    ),
    # data (the readers hrnas search builds; it prints their errors as one line)
    "data: truncated image": (
        cityscapes(
            lambda root: first_val_pair(root)[0].write_bytes(first_val_pair(root)[0].read_bytes()[:300])
        ),
        "leftImg8bit",
    ),
    "data: label ids outside the classes": (cityscapes(label_map(77)), "77"),
    "data: label map of the wrong size": (cityscapes(label_map(7, size=(8, 8))), "8x8"),
    "data: empty split": (cityscapes(empty_split), "val"),
    "data: COCO without images": (coco(lambda d: d.pop("images")), "images"),
    "data: COCO image without width": (coco(lambda d: d["images"][0].pop("width")), "width"),
    "data: COCO annotation without bbox": (coco(lambda d: d["annotations"][0].pop("bbox")), "bbox"),
    # checkpoints (read by hrnas search --resume)
    "checkpoint: truncated": (checkpoint("truncated"), "corrupt"),
    "checkpoint: another search": (checkpoint("another search"), "another search"),
    "checkpoint: another version": (checkpoint("another version"), "format"),
    "checkpoint: pickled code": (checkpoint("pickled code"), "search_checkpoint.pt"),
}


def answer(target) -> tuple[int, str]:
    """(exit status, what the user sees on stderr) for argv, or for a reader call as hrnas search reports it."""
    if callable(target):
        try:
            target()
        except CLI_PRINTED as exc:
            return 2, f"hrnas search: error: {exc}\n"
        return 0, ""
    raise AssertionError("argv cases go through main")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_line(case, tmp_path, request, capsys):
    build, names = CASES[case]
    target = build(tmp_path, request)
    before = snapshot(tmp_path)
    if callable(target):
        status, err = answer(target)
    else:
        try:
            status = main(target)
        except SystemExit as exit_:  # argparse rejected a value: its usage, then one error line
            status = exit_.code
        err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error:" in line]
    assert status == 2, err
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    assert len(lines) == 1 or lines[0].startswith("usage:"), err  # nothing else but argparse's usage
    assert names.lower() in errors[0].lower(), errors[0]
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing written is lost or changed
    assert not (tmp_path / "ran").exists()  # no code from a file was executed


def test_the_table_counts_at_least_twenty_kinds():
    assert len(CASES) >= 20
    assert {case.split(":")[0] for case in CASES} == {
        "arch",
        "result",
        "weights",
        "run",
        "nnictl",
        "cli",
        "data",
        "checkpoint",
    }

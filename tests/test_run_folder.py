"""The run folder contract (nni_hrnas.run_folder): folders of older code load, results round-trip,
newer or malformed files are one clear line, in the library, the CLI and the analysis alike.

``old_run_folder/`` holds the ``result.json`` and ``arch.json`` that ``hrnas search --task digits_seg
--preset tiny --epochs 1 --lambda 0.01`` (HRNAS_SMOKE=1) wrote at commit 1152eaa, before result.json
had a schema_version; it is the reference the tests compare with, read with plain ``json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from analysis.collect import collect
from nni_hrnas.run_folder import RunFolder, RunFolderError, SearchResult
from nni_hrnas.search import main as search_main
from search_spaces import HRNASNetwork
from search_spaces.config import HRNASConfig

OLD = Path(__file__).parent / "old_run_folder"


def raw(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def old_folder(tmp_path: Path) -> tuple[RunFolder, torch.nn.Module]:
    """A copy of the old folder, with the weights of the network its files describe (random, BN statistics too)."""
    folder = tmp_path / "old"
    shutil.copytree(OLD, folder)
    torch.manual_seed(0)
    net = HRNASNetwork(HRNASConfig(**raw(OLD / "result.json")["config"]), raw(OLD / "arch.json"))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    save_file(net.state_dict(), str(folder / "model.safetensors"))
    return RunFolder(folder), net.eval()


def test_a_folder_written_before_the_schema_version_loads_field_by_field():
    want = raw(OLD / "result.json")
    assert "schema_version" not in want  # the reference is the old format
    result = RunFolder(OLD).load_result()
    assert result.schema_version == 1
    assert (result.macs, result.params, result.metric_name) == (5_705_920, 71_259, "miou")
    assert (
        result.metric == want["metric"] and result.macs_max == want["macs_max"] and result.macs_min == 254_400
    )
    assert (result.lambda_, result.eps, result.prune_every, result.epochs, result.seed) == (
        0.01,
        0.001,
        1,
        1,
        0,
    )
    assert result.input_size == (1, 64, 64) and (result.task, result.preset, result.strategy) == (
        "digits_seg",
        "tiny",
        "hrnas",
    )
    assert result.search_cost.images_seen == 256 and result.search_cost.epochs == 1
    assert result.search_cost.macs_processed == want["search_cost"]["macs_processed"]
    assert result.arch == want["arch"] == raw(OLD / "arch.json") and result.arch_max == want["arch_max"]
    assert result.trajectory == want["trajectory"] and result.config == want["config"]
    assert result.devices == want["devices"] and result.smoke is True and result.run_dir == want["run_dir"]
    assert result.target_macs is None and result.target is None and result.resumed_at_epoch is None
    assert result.extra == {}
    # written back: the same keys and values, and the version
    assert result.to_dict() == {**want, "schema_version": 1}
    # scripts written against result.json read the same keys
    assert (
        result["lambda"] == 0.01 and result["search_cost"] == want["search_cost"] and "target" not in result
    )


def test_an_old_folder_round_trips_through_save_copy_and_load_model(tmp_path):
    folder, net = old_folder(tmp_path)
    assert [p.name for p in folder.searched_files] == ["arch.json", "model.safetensors", "result.json"]
    assert folder.checkpoint_path.name == "search_checkpoint.pt"
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        want = net(x)
        model = folder.load_model()
        torch.testing.assert_close(model(x), want, rtol=0, atol=0)
    assert model.cost((1, 64, 64)).macs == raw(OLD / "result.json")["macs"]  # the network its macs describe

    result = folder.load_result()
    new = RunFolder(tmp_path / "new")
    new.save(result.arch, model, result)
    assert raw(new.result_path) == {**raw(OLD / "result.json"), "schema_version": 1}
    assert raw(new.arch_path) == raw(OLD / "arch.json")
    assert new.load_result() == result
    copy = new.copy_to(tmp_path / "copy")
    assert copy.weights_path.read_bytes() == new.weights_path.read_bytes()
    assert raw(copy.result_path) == raw(new.result_path)
    with torch.no_grad():
        torch.testing.assert_close(copy.load_model()(x), want, rtol=0, atol=0)


def test_fields_older_folders_lack_are_none_and_unknown_keys_are_kept():
    data = raw(OLD / "result.json")
    for key in ("devices", "shrink_epochs", "path_overhead", "smoke", "run_dir", "macs_min"):
        del data[key]
    del data["search_cost"]["macs_processed"]
    data["note"] = {"by": "hand"}
    result = SearchResult.from_dict(data)
    assert (
        result.devices,
        result.shrink_epochs,
        result.path_overhead,
        result.smoke,
        result.run_dir,
        result.macs_min,
        result.search_cost.macs_processed,
    ) == (None,) * 7
    assert result.extra == {"note": {"by": "hand"}}
    assert result.to_dict() == {**data, "schema_version": 1}  # nothing invented, nothing lost


def test_a_target_search_keeps_where_it_landed():
    target = {
        "macs": 5_000_000,
        "relative_error": 0.04,
        "side": "above",
        "within_tolerance": True,
        "final_lambda_scale": 1.0,
    }
    data = {**raw(OLD / "result.json"), "target_macs": 5_000_000, "target": target}
    result = SearchResult.from_dict(data)
    assert result.target_macs == 5_000_000 and result.target == target
    assert result.to_dict() == {**data, "schema_version": 1}


def test_a_newer_schema_is_one_line_saying_to_upgrade_everywhere(tmp_path, capsys):
    folder, _ = old_folder(tmp_path)
    folder.result_path.write_text(json.dumps({**raw(OLD / "result.json"), "schema_version": 2, "new": 1}))
    with pytest.raises(RunFolderError) as info:
        folder.load_result()
    message = str(info.value)
    assert "\n" not in message and str(folder.result_path) in message
    assert "schema_version 2, newer than this nni-hrnas reads (up to 1)" in message
    assert "upgrade nni-hrnas (pip install -U nni-hrnas)" in message
    # hrnas export: exit status 2, that line on stderr, nothing written
    assert search_main(["export", str(folder.path), "--out", str(tmp_path / "exported")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "schema_version 2" in err[0] and "upgrade" in err[0]
    assert not (tmp_path / "exported").exists()
    # the analysis lists it as a problem and goes on
    coll = collect([str(folder.path)])
    assert coll.table.empty and len(coll.errors) == 1 and "schema_version 2" in coll.errors[0].message


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda text: text[:40], "JSONDecodeError"),
        (lambda text: "[1, 2]", "a JSON list, not an object"),
        (
            lambda text: json.dumps({**json.loads(text), "macs": "many"}),
            "macs is 'many', expected an integer",
        ),
        (
            lambda text: json.dumps({**json.loads(text), "params": True}),
            "params is True, expected an integer",
        ),
        (
            lambda text: json.dumps({**json.loads(text), "metric": "0.5"}),
            "metric is '0.5', expected a number",
        ),
        (
            lambda text: json.dumps({**json.loads(text), "arch": {"p0_b0_n0_k3": "4"}}),
            "arch is {'p0_b0_n0_k3': '4'}, expected a JSON object of choice label -> integer",
        ),
        (lambda text: json.dumps({**json.loads(text), "input_size": "1x64x64"}), "input_size is '1x64x64'"),
        (
            lambda text: json.dumps({**json.loads(text), "search_cost": {"epochs": 1.5}}),
            "search_cost.epochs is 1.5, expected an integer",
        ),
        (
            lambda text: json.dumps({**json.loads(text), "config": "tiny"}),
            "config is 'tiny', expected a JSON object",
        ),
        (lambda text: json.dumps({**json.loads(text), "schema_version": 0}), "schema_version 0"),
        (lambda text: json.dumps({**json.loads(text), "schema_version": "1"}), "schema_version '1'"),
    ],
    ids=[
        "truncated",
        "a list",
        "macs text",
        "params bool",
        "metric text",
        "arch text width",
        "input size text",
        "cost epochs fraction",
        "config text",
        "version 0",
        "version text",
    ],
)
def test_a_malformed_result_is_one_line_naming_the_file_and_the_field(edit, problem, tmp_path):
    folder, _ = old_folder(tmp_path)
    folder.result_path.write_text(edit(folder.result_path.read_text()))
    with pytest.raises(RunFolderError) as info:
        folder.load_model()
    message = str(info.value)
    assert "\n" not in message and problem in message, message
    assert message.startswith(f"{folder.result_path} is not a result.json as hrnas search writes it")
    assert message.endswith("restore it from the search's run folder")


def test_an_unfinished_search_is_named_as_such(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    with pytest.raises(FileNotFoundError, match="result.json is missing$"):
        folder.load_result()
    folder.checkpoint_path.write_bytes(b"a checkpoint")
    assert folder.has_checkpoint() and not folder.has_result()
    with pytest.raises(FileNotFoundError, match="continue it with hrnas search --resume --out"):
        folder.load_model()

"""``hrnas ablate space|positional|plugin`` at smoke scale: the table, the report section, the
built modules of each row, resuming, and bad input as one line.

Counts come from torch (modules, ``numel``), not from the project's cost model.
"""

from __future__ import annotations

import pandas as pd
import pytest
from torch import nn

from nni_hrnas import ablate as ablate_module
from nni_hrnas.cli import main as hrnas
from nni_hrnas.run_folder import RunFolder
from search_spaces.ablations import SPACE_VARIANTS
from search_spaces.ops import LightweightTransformer


@pytest.fixture(autouse=True)
def smoke(monkeypatch):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")


def _transformers(net: nn.Module) -> list[LightweightTransformer]:
    return [m for m in net.modules() if isinstance(m, LightweightTransformer)]


def _kernels(net: nn.Module) -> set[int]:
    return {
        m.kernel_size[0]
        for m in net.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels and m.kernel_size[0] > 1
    }


def _table(path) -> pd.DataFrame:
    return pd.read_csv(path).set_index("variant")


def test_ablate_space_searches_each_variant_and_skips_one_the_space_does_not_accept(
    tmp_path, monkeypatch, capsys
):
    # a variant whose override the space does not know (as single_branch before its layout exists)
    monkeypatch.setitem(SPACE_VARIANTS, "future", ("nosuch_layout=1",))
    args = ["ablate", "space", "--task", "digits_seg", "--preset", "tiny", "--epochs", "1"]
    assert hrnas([*args, "--variants", "multi_branch", "future", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "variant future skipped" in captured.err and "nosuch_layout" in captured.err
    table = _table(tmp_path / "table6.csv")
    assert list(table.index) == ["multi_branch", "future"]
    assert pd.isna(table.loc["future", "metric"]) and "skipped" in table.loc["future", "note"]
    net = RunFolder(tmp_path / "multi_branch-seed0").load_model()
    assert not _transformers(net) and _kernels(net) == {3}
    assert table.loc["multi_branch", "params"] == sum(p.numel() for p in net.parameters())
    report = (tmp_path / "report.html").read_text()
    assert "Table 6" in report and "multi_branch" in report and "skipped" in report
    # a finished row is read back, not searched again
    monkeypatch.setattr(ablate_module, "run_search", lambda *a, **k: pytest.fail("searched again"))
    assert hrnas([*args, "--variants", "multi_branch", "--out", str(tmp_path)]) == 0
    assert (
        _table(tmp_path / "table6.csv").loc["multi_branch", "metric"] == table.loc["multi_branch", "metric"]
    )


def test_ablate_positional_trains_each_encoding_and_resumes(tmp_path, monkeypatch):
    args = ["ablate", "positional", "--task", "digits_seg", "--preset", "tiny", "--epochs", "1"]
    variants = ["no_transformer", "map_encoder_decoder"]
    assert hrnas([*args, "--variants", *variants, "--out", str(tmp_path)]) == 0
    table = _table(tmp_path / "table7.csv")
    assert list(table.index) == variants and table["metric"].notna().all()
    assert not _transformers(RunFolder(tmp_path / "no_transformer-seed0").load_model())
    with_map = _transformers(RunFolder(tmp_path / "map_encoder_decoder-seed0").load_model())
    assert with_map and all(
        t.pos_encoding == "map"
        and hasattr(t, "pos_decoder")
        and t.proj.out_channels == 8
        and t.token_dim == 64
        for t in with_map
    )  # n = 8 tokens of 8 x 8, the map in encoder and decoder
    assert "Table 7" in (tmp_path / "report.html").read_text()
    monkeypatch.setattr(ablate_module, "run_train", lambda *a, **k: pytest.fail("trained again"))
    assert hrnas([*args, "--variants", *variants, "--out", str(tmp_path)]) == 0
    assert _table(tmp_path / "table7.csv")["metric"].tolist() == table["metric"].tolist()


def test_ablate_plugin_trains_with_and_without_the_transformer(tmp_path):
    args = ["ablate", "plugin", "--task", "digits_cls", "--epochs", "1", "--out", str(tmp_path)]
    assert hrnas([*args, "--variants", "mobilenetv2", "mobilenetv2_transformer"]) == 0
    table = _table(tmp_path / "table8.csv")
    plain = RunFolder(tmp_path / "mobilenetv2-seed0").load_model()
    plugged = RunFolder(tmp_path / "mobilenetv2_transformer-seed0").load_model()
    assert not _transformers(plain) and len(_transformers(plugged)) == 17
    added = sum(p.numel() for t in _transformers(plugged) for p in t.parameters())
    assert table.loc["mobilenetv2", "params"] == sum(p.numel() for p in plain.parameters())
    assert table.loc["mobilenetv2_transformer", "params"] == table.loc["mobilenetv2", "params"] + added
    assert table.loc["mobilenetv2_transformer", "setting"] == "mobilenetv2_transformer"
    assert "Table 8" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plugin", "--task", "digits_kp", "--epochs", "1"], "task 'digits_kp' is keypoints"),
        (
            ["plugin", "--task", "digits_cls", "--epochs", "1", "--variants", "nosuch"],
            "unknown plugin variant",
        ),
        (["positional", "--task", "nosuch", "--epochs", "1"], "Unknown task 'nosuch'"),
        (["positional", "--task", "digits_seg", "--epochs", "0"], "invalid epochs=0"),
        (["space", "--task", "digits_seg", "--preset", "nosuch"], "unknown preset 'nosuch'"),
    ],
)
def test_bad_input_is_one_line(argv, message, tmp_path, capsys):
    assert hrnas(["ablate", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and message in err, err
    assert not any(tmp_path.iterdir())


def test_the_registry_rows_are_valid_space_overrides():
    """Every Table 6/7 row, the single-branch layout included, is accepted by the digits preset."""
    for name, items in {**SPACE_VARIANTS, **ablate_module.POSITIONAL_VARIANTS}.items():
        problem = ablate_module._space_problem("digits_seg", items)
        assert problem is None, (name, problem)


def test_each_table6_row_builds_its_space_where_the_tasks_default_space_is_narrowed():
    """digits_seg's default space is Table 6's multi-branch row (3x3 paths, no transformer); every row
    names the keys it sets, so on that task the mixconv and transformer rows still build their spaces."""
    from nni_hrnas.search import SearchSettings, search_space
    from search_spaces.config import parse_space_overrides

    expected = {
        "single_branch": ({3}, False),
        "multi_branch": ({3}, False),
        "mixconv": ({3, 5, 7}, False),
        "transformer": ({3, 5, 7}, True),
    }
    assert set(expected) == set(SPACE_VARIANTS)
    for name, (kernels, transformer) in expected.items():
        overrides = parse_space_overrides(SPACE_VARIANTS[name])
        space = search_space(SearchSettings(task="digits_seg", space=overrides))
        assert (_kernels(space), bool(_transformers(space))) == (kernels, transformer), name

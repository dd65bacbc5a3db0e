"""``hrnas train``: a fixed network trained into a run folder that reloads, ``--init`` weights,
``--space`` reaching the built modules, plug-in networks, and bad input as one line.

Counts come from torch (modules, ``numel``), not from the project's cost model.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nni_hrnas import train as train_module
from nni_hrnas.cli import main as hrnas
from nni_hrnas.run_folder import RunFolder, load_weights
from nni_hrnas.train import TrainSettings, train_fixed
from search_spaces.ops import LightweightTransformer

# the tiny preset on digits_seg: the smallest space that trains on a task (seconds under smoke)
SPACE = ["kernels=3", "transformer=false"]


def _depthwise_kernels(net: nn.Module) -> set[int]:
    return {
        m.kernel_size[0]
        for m in net.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels and m.kernel_size[0] > 1
    }  # the spatial depthwise convs (a strided shortcut is a depthwise 1x1)


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke training of the tiny preset on digits_seg with --space overrides: (network, result, folder)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HRNAS_SMOKE", "1")
    mp.setenv("HRNAS_QUIET", "1")
    out = tmp_path_factory.mktemp("train") / "run"
    try:
        settings = TrainSettings(task="digits_seg", epochs=3, out=str(out), preset="tiny", space=SPACE)
        fixed, result = train_fixed(settings)
    finally:
        mp.undo()
    return fixed.net, result, out


def test_train_writes_a_run_folder_that_reloads_with_equal_outputs(trained):
    net, result, out = trained
    folder = RunFolder(out)
    assert folder.has_result() and folder.weights_path.is_file() and folder.arch_path.is_file()
    on_disk = json.loads(folder.result_path.read_text())
    assert on_disk["strategy"] == "train" and on_disk["epochs"] == 1  # smoke trains one epoch
    assert on_disk["task"] == "digits_seg" and on_disk["metric_name"] == "miou" and on_disk["run_seconds"] > 0
    reloaded = folder.load_model()
    x = torch.randn(2, 1, 64, 64)
    net.eval()
    with torch.no_grad():  # the trained network runs channels-last (as it trained): float tolerance
        torch.testing.assert_close(net(x), reloaded(x), rtol=1e-5, atol=1e-5)
    assert _params(reloaded) == result.params == on_disk["params"]
    # the --space overrides reached the modules: no transformer, 3x3 depthwise convs only
    assert not any(isinstance(m, LightweightTransformer) for m in reloaded.modules())
    assert _depthwise_kernels(reloaded) == {3}


def test_space_overrides_change_the_built_modules(tmp_path):
    full = train_module.build_fixed(
        TrainSettings(task="digits_seg", epochs=1, out=str(tmp_path), preset="tiny")
    )
    assert any(isinstance(m, LightweightTransformer) for m in full.net.modules())
    assert _depthwise_kernels(full.net) == {3, 5, 7}
    items = ["transformer.placement=all", "transformer.tokens=8", "transformer.size=8", "kernels=5,7"]
    changed = train_module.build_fixed(
        TrainSettings(task="digits_seg", epochs=1, out=str(tmp_path), preset="tiny", space=items)
    ).net
    transformers = [m for m in changed.modules() if isinstance(m, LightweightTransformer)]
    assert transformers and all(t.proj.out_channels == 8 and t.token_dim == 64 for t in transformers)
    assert _depthwise_kernels(changed) == {5, 7}


def test_init_starts_from_the_run_folders_weights(trained, tmp_path, monkeypatch):
    _, _, run = trained
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    seen = {}
    real = train_module.train_network

    def recording(task, net, *args, **kwargs):
        seen["state"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return real(task, net, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_network", recording)
    saved = load_weights(RunFolder(run).weights_path)
    args = ["train", "--task", "digits_seg", "--epochs", "1", "--seed", "1"]
    assert hrnas([*args, "--init", str(run), "--out", str(tmp_path / "fine")]) == 0
    assert seen["state"].keys() == saved.keys()
    assert all(torch.equal(seen["state"][k], saved[k]) for k in saved)
    fine = json.loads((tmp_path / "fine" / "result.json").read_text())
    assert fine["init"] == str(run) and fine["arch"] == json.loads(RunFolder(run).arch_path.read_text())
    # without --init the same network starts from fresh weights (so the check above can fail)
    scratch = [*args, "--preset", "tiny", "--out", str(tmp_path / "scratch")]
    assert hrnas([*scratch, "--space", SPACE[0], "--space", SPACE[1]]) == 0
    assert not all(torch.equal(seen["state"][k], saved[k]) for k in saved if saved[k].is_floating_point())


def test_a_plugin_model_trains_and_reloads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    out = tmp_path / "mbv2"
    args = ["train", "--task", "digits_cls", "--model", "mobilenetv2_transformer", "--epochs", "1"]
    assert hrnas([*args, "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    net = RunFolder(out).load_model()
    transformers = [m for m in net.modules() if isinstance(m, LightweightTransformer)]
    assert len(transformers) == 17  # one beside each inverted-residual block
    assert _params(net) == result["params"] and result["model"] == "mobilenetv2_transformer"
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)  # the task's input and classes


@pytest.fixture
def arch_files(tmp_path):
    from nni_hrnas.tasks.registry import get_task
    from search_spaces import choice_maxima

    # --arch is an arch of the task's space (digits_seg's: its preset with 3x3 paths only, no transformer)
    full = choice_maxima(train_module.space_config(get_task("digits_seg"), None, []))
    (tmp_path / "full.json").write_text(json.dumps(full))
    (tmp_path / "bogus.json").write_text(json.dumps({**full, "p9_b9_n9_k3": 4}))
    return tmp_path


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--preset", "nosuch"], "unknown preset 'nosuch'"),
        (["--model", "nosuch"], "unknown model 'nosuch'"),
        (["--model", "mobilenetv2"], "'mobilenetv2' is a classification network, but task 'digits_seg'"),
        (["--arch", "{d}/full.json", "--preset", "tiny"], "--arch and --preset both name the network"),
        (["--preset", "tiny", "--space", "transformer.nosuch=1"], "invalid --space"),
        (["--arch", "{d}/full.json", "--space", "kernels=5"], "not a choice of this space"),
        (["--arch", "{d}/bogus.json"], "p9_b9_n9_k3"),
        (["--model", "mobilenetv2", "--space", "kernels=3"], "drop --space"),
        ([], "no network given"),
    ],
)
def test_bad_input_is_one_line(extra, message, arch_files, tmp_path, capsys):
    extra = [e.format(d=arch_files) for e in extra]
    rc = hrnas(["train", "--task", "digits_seg", "--epochs", "1", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith("hrnas train: error:") and message in err, err
    assert not (tmp_path / "o" / "result.json").exists()

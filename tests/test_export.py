"""hrnas export --format / hrnas bench: every head and edge architecture exports, loads with torch alone,
runs in onnxruntime with the searched network's outputs; bad input is one line and overwrites nothing."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from reference import parameter_count, randomize_bn

from nni_hrnas.cli import main
from nni_hrnas.deploy import DeployError, ExportSettings, bench, export_deployment
from nni_hrnas.strategy.checkpoint import save_searched
from search_spaces import HRNASSpace

#: Not importable where the standalone model is loaded (the subprocess test)
PROJECT_AND_NNI = (
    "nni",
    "nni_hrnas",
    "search_spaces",
    "analysis",
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
)


def _arch(space: HRNASSpace, seed: int, p_zero: float = 0.3, tokens: str = "random") -> dict[str, int]:
    """A random architecture: each kernel path removed with probability ``p_zero``; tokens random,
    ``zero`` (no transformer anywhere) or ``few`` (the smallest non-zero count)."""
    rng = random.Random(seed)
    arch = {}
    for label, values in space.choices().items():
        if label.endswith("_tok") and tokens != "random":
            arch[label] = 0 if tokens == "zero" else values[1]
        else:
            arch[label] = 0 if rng.random() < p_zero else rng.choice(values[1:])
    return arch


def _run_folder(path: Path, preset: str, arch: dict[str, int], seed: int = 0, **overrides) -> torch.nn.Module:
    """A run folder as hrnas search writes it (arch.json, model.safetensors, result.json), no search run;
    ``overrides`` of the preset's config are recorded in it as a search records them."""
    space = HRNASSpace.from_preset(preset, **overrides)
    torch.manual_seed(seed)
    net = space.freeze(arch)
    randomize_bn(net, seed)
    net.eval()
    task = {"segmentation": "digits_seg", "classification": "digits_cls", "keypoints": "digits_kp"}[
        space.config.task
    ]
    result = {
        "task": task,
        "preset": preset,
        "config": dataclasses.asdict(space.config),
        "input_size": list(space.config.input_size),
        "arch": arch,
        "macs": net.cost().macs,
        "params": parameter_count(net),
        "metric": 0.5,
        "metric_name": "metric",
        "lambda": 1e-3,
        "eps": 1e-3,
    }
    save_searched(path, arch, net, result)
    return net


def _check_files(out: Path, net: torch.nn.Module, size: tuple[int, ...], batches: tuple[int, ...]) -> None:
    """The written files, loaded here independently, give the network's outputs on fresh inputs."""
    program = torch.export.load(str(out / "model.pt2")).module()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(123)
    for b in batches:
        x = torch.randn(b, *size, generator=g) * 2
        with torch.no_grad():
            want = net(x)
            torch.testing.assert_close(program(x), want, rtol=0, atol=1e-4)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "preset, fuse, dynamic, size",
    [
        ("digits_seg", False, False, None),
        ("digits_cls", True, True, None),
        ("digits_kp", True, False, None),
        ("tiny", False, True, (3, 64, 32)),  # not the search's size, not square
    ],
)
def test_every_head_exports_and_matches(preset, fuse, dynamic, size, tmp_path):
    space = HRNASSpace.from_preset(preset)
    # most paths removed: every head is still exported whole, and the export of a 40-block digits
    # network with every path took minutes per format
    net = _run_folder(tmp_path / "run", preset, _arch(space, seed=1, p_zero=0.85))
    settings = ExportSettings(formats=("torch", "onnx"), fuse=fuse, dynamic_batch=dynamic, input_size=size)
    info = export_deployment(tmp_path / "run", tmp_path / "out", settings)
    size = size or space.config.input_size
    _check_files(tmp_path / "out", net, size, (1, 3) if dynamic else (1,))
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    assert (
        card["input_size"] == list(size) and card["params"] == parameter_count(net) and card["fuse"] == fuse
    )
    assert set(card["files"]) == {"model.pt2", "model.onnx"} and all(
        f["max_abs_diff"] <= 1e-4 for f in card["files"].values()
    )
    assert card == {k: v for k, v in info.items() if k != "out"}
    assert "torch.export.load('model.pt2')" in (tmp_path / "out" / "model_card.md").read_text()
    if preset.startswith("digits"):
        assert card["io"]["input"]["mean"] == [0.1] and card["io"]["input"]["std"] == [0.25]


@pytest.mark.parametrize(
    "tokens, p_zero, size",
    [
        ("zero", 1.0, None),  # every kernel path and transformer removed: blocks are their shortcuts
        ("few", 1.0, None),  # transformers of the fewest tokens, no kernel path
        ("zero", 0.5, (3, 32, 96)),  # some paths removed, no transformer, a wide input
    ],
)
def test_edge_architectures_export_and_match(tokens, p_zero, size, tmp_path):
    space = HRNASSpace.from_preset("tiny")
    arch = _arch(space, seed=2, p_zero=p_zero, tokens=tokens)
    if tokens == "few":  # a transformer in every third block: each one exported costs seconds
        for i, label in enumerate(label for label in sorted(arch) if label.endswith("_tok")):
            arch[label] = arch[label] if i % 3 == 0 else 0
    net = _run_folder(tmp_path / "run", "tiny", arch)
    export_deployment(
        tmp_path / "run",
        tmp_path / "out",
        ExportSettings(formats=("torch", "onnx"), input_size=size, fuse=p_zero < 1.0),
    )
    _check_files(tmp_path / "out", net, size or space.config.input_size, (1,))


def test_transformers_of_every_block_kind_export_and_match(tmp_path):
    """Placement 'all': a reduction block's transformer (half-size output), an upsampling fusion
    block's and the head's, each alone in a network of shortcuts, exported fused and matched."""
    space = HRNASSpace.from_preset("tiny", transformer={"placement": "all"})
    kinds = ("f1_o1_i0_tok", "f2_o0_i1_tok", "head_tok")  # 8 -> 8 at stride 2, upsampled, 24 -> 8
    arch = {label: (values[1] if label in kinds else 0) for label, values in space.choices().items()}
    net = _run_folder(tmp_path / "run", "tiny", arch, transformer={"placement": "all"})
    export_deployment(
        tmp_path / "run",
        tmp_path / "out",
        ExportSettings(formats=("torch", "onnx"), input_size=(3, 32, 96), fuse=True),
    )
    _check_files(tmp_path / "out", net, (3, 32, 96), (1,))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    space = HRNASSpace.from_preset("tiny")
    net = _run_folder(root / "run", "tiny", _arch(space, seed=5, p_zero=0.85))  # sparse: exports in seconds
    export_deployment(
        root / "run", root / "out", ExportSettings(formats=("torch", "onnx"), dynamic_batch=True)
    )
    return root, net


def test_standalone_model_loads_without_nni_or_this_project(tiny_export, tmp_path):
    root, net = tiny_export
    # a site folder holding everything installed except NNI, Lightning and this project (and no .pth files)
    site = Path(torch.__file__).parents[1]
    clean = tmp_path / "site"
    clean.mkdir()
    for entry in site.iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        if (
            name not in PROJECT_AND_NNI
            and not entry.name.endswith(".pth")
            and not name.startswith("__editable__")
        ):
            (clean / entry.name).symlink_to(entry)
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import importlib.util, sys, torch\n"
        f"blocked = [m for m in {PROJECT_AND_NNI!r} if importlib.util.find_spec(m) is not None]\n"
        "assert not blocked, blocked\n"
        f"model = torch.export.load({str(root / 'out' / 'model.pt2')!r}).module()\n"
        f"torch.save(model(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in " + repr(PROJECT_AND_NNI) + ")\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.append({str(clean)!r})\n" + script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "y.pt"), net(x), rtol=0, atol=1e-4)


def test_bench_reports_percentiles_of_each_runtime(tiny_export):
    root, _ = tiny_export
    for source, runtime in ((root / "out", "torch"), (root / "out", "onnxruntime"), (root / "run", "torch")):
        report = bench(source, runtime=runtime, batch=2, threads=1, warmup=1, repeats=5)
        assert report["runtime"] == runtime and report["batch"] == 2 and report["repeats"] == 5
        assert 0 < report["min_ms"] <= report["p10_ms"] <= report["median_ms"] <= report["p90_ms"]
        assert report["macs"] == json.loads((root / "out" / "model_card.json").read_text())["macs"]


def test_time_latency_percentiles_match_numpy(monkeypatch):
    from nni_hrnas import latency

    durations = [3.0, 1.0, 4.0, 1.5, 9.0, 2.0, 6.0, 5.0, 3.5, 8.0, 7.0]
    clock = iter(
        np.cumsum([0.0] + [v for d in durations for v in (d, 0.0)]).tolist()
    )  # start, end, start, ...
    monkeypatch.setattr(latency.time, "perf_counter", lambda: next(clock))
    stats = latency.time_latency(lambda: None, warmup=2, repeats=len(durations))
    assert stats.median == pytest.approx(np.median(durations))
    assert stats.p10 == pytest.approx(np.percentile(durations, 10))
    assert stats.p90 == pytest.approx(np.percentile(durations, 90))
    assert stats.min == 1.0 and stats.mean == pytest.approx(np.mean(durations))


def test_onnxruntime_latency_runner_computes_the_kernel_path():
    from nni_hrnas.latency import inference_runner, measure_path_overhead
    from search_spaces.ops import KernelPath

    path = KernelPath(8, 8, 12, 5, 1).eval()
    randomize_bn(path, seed=3)
    x = torch.randn(1, 8, 16, 16)
    (got,) = inference_runner(path, x, "onnxruntime")()
    with torch.no_grad():
        np.testing.assert_allclose(got, path(x).numpy(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="invalid runtime='tflite'"):
        measure_path_overhead(runtime="tflite")


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


@pytest.mark.parametrize(
    "setup, extra, message",
    [
        ("no_weights", [], "model.safetensors is missing"),
        ("plain", ["--opset", "9"], "invalid opset=9"),
        ("plain", ["--input", "3x30x30"], "multiples of 32"),
        ("plain", ["--input", "1x32x32"], "takes 3 input channels"),
        ("plain", ["--format", "tflite"], "invalid format='tflite'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(setup, extra, message, tmp_path, capfd):
    space = HRNASSpace.from_preset("tiny")
    _run_folder(tmp_path / "run", "tiny", _arch(space, seed=4))
    if setup == "no_weights":
        (tmp_path / "run" / "model.safetensors").unlink()
    args = ["export", str(tmp_path / "run"), "--out", str(tmp_path / "out"), *extra]
    if "--format" not in extra:
        args += ["--format", "all"]
    assert main(args) == 2
    err = capfd.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert _tree(tmp_path / "out") == {}


def test_export_folder_of_another_model_is_refused_unless_forced(tiny_export, tmp_path, capfd):
    root, _ = tiny_export
    out = tmp_path / "out"
    out.mkdir()
    for name in ("model.pt2", "model.onnx", "model_card.json", "model_card.md"):
        (out / name).write_bytes((root / "out" / name).read_bytes())
    before = _tree(out)
    other = tmp_path / "other"
    _run_folder(other, "tiny", _arch(HRNASSpace.from_preset("tiny"), seed=6), seed=1)
    assert main(["export", str(other), "--out", str(out), "--format", "torch"]) == 2
    err = capfd.readouterr().err.strip()
    assert "already holds a different model" in err and "--force" in err and "\n" not in err
    assert _tree(out) == before
    # the same model again is no conflict; a forced copy of the other one replaces every file of the first
    assert main(["export", str(root / "run"), "--out", str(out)]) == 0
    assert main(["export", str(other), "--out", str(out), "--force"]) == 0
    assert sorted(_tree(out)) == ["arch.json", "model.safetensors", "result.json"]
    assert _tree(out)["model.safetensors"] == (other / "model.safetensors").read_bytes()


def test_a_failed_check_writes_nothing(tmp_path):
    _run_folder(tmp_path / "run", "tiny", _arch(HRNASSpace.from_preset("tiny"), seed=7, tokens="zero"))
    with pytest.raises(DeployError, match="model.pt2 differs from the searched network"):
        export_deployment(
            tmp_path / "run", tmp_path / "out", ExportSettings(formats=("torch",), fuse=True, tolerance=1e-12)
        )
    assert _tree(tmp_path / "out") == {}


def test_training_step_runner_makes_one_adamw_step_of_the_given_loss():
    """One call = forward, the loss, backward and an AdamW update, as written out by hand on a copy
    (the default loss: the output's mean square; a given loss replaces it)."""
    import copy

    from nni_hrnas.latency import training_step_runner
    from search_spaces.ops import KernelPath

    x = torch.randn(2, 8, 16, 16)
    for loss in (None, lambda out: out.abs().sum()):
        torch.manual_seed(0)
        net = KernelPath(8, 8, 12, 3, 1).train()
        reference, initial = copy.deepcopy(net), copy.deepcopy(net)
        step = training_step_runner(net, x, loss, lr=1e-2)
        optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2)
        for _ in range(2):
            step()
            optimizer.zero_grad()
            out = reference(x)
            (out.square().mean() if loss is None else out.abs().sum()).backward()
            optimizer.step()
        for got, want in zip(net.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(got, want)
        assert not torch.equal(net.project.weight, initial.project.weight)  # it did train


def test_inference_runner_refuses_an_unknown_runtime():
    from nni_hrnas.latency import inference_runner

    with pytest.raises(ValueError, match="invalid runtime='tflite': expected one of torch, onnxruntime"):
        inference_runner(torch.nn.Identity(), torch.zeros(1), "tflite")


def test_latency_runtime_reaches_the_path_overhead_measurement(monkeypatch):
    from nni_hrnas import latency
    from nni_hrnas.search import SearchError, SearchSettings

    calls = []
    monkeypatch.setattr(latency, "measure_path_overhead", lambda **kw: calls.append(kw) or 2.5e6)
    settings = SearchSettings(
        task="digits_seg",
        path_overhead="auto",
        latency_runtime="onnxruntime",
        latency_batch=4,
        accelerator="cpu",
    )
    assert settings.path_overhead == 2.5e6 and calls == [{"batch_size": 4, "runtime": "onnxruntime"}]
    with pytest.raises(SearchError, match="invalid latency_runtime='tflite'"):
        SearchSettings(task="digits_seg", latency_runtime="tflite", accelerator="cpu")


def test_recorded_bench_shows_beside_macs_in_the_report(tiny_export, tmp_path, capfd):
    from analysis.collect import collect
    from analysis.report import write_report

    root, _ = tiny_export
    run = tmp_path / "run"
    run.mkdir()
    for name in ("arch.json", "model.safetensors", "result.json"):
        (run / name).write_bytes((root / "run" / name).read_bytes())
    assert main(["bench", str(run), "--batch", "2", "--warmup", "0", "--repeats", "3", "--record"]) == 0
    assert main(["bench", str(run), "--warmup", "0", "--repeats", "3", "--record"]) == 0
    assert main(["bench", str(run), "--batch", "2", "--warmup", "0", "--repeats", "3", "--record"]) == 0
    lines = capfd.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and (run / "bench.jsonl").read_text().splitlines() == lines
    with open(run / "bench.jsonl", "a") as f:
        f.write("not json\n")
    coll = collect([run])
    row = coll.table.iloc[0]
    assert row["latency_ms"] == json.loads(lines[1])["median_ms"]  # the latest batch-1 record
    assert row["latency_setting"] == "torch (plain), batch 1, 1 thread(s)"
    assert [p.message for p in coll.problems] == ["line 4 is not a bench record; left out"]
    html = write_report([run], tmp_path / "r.html", csv=False, parquet=False).html.read_text()
    assert "<th>latency_ms</th>" in html and "<th>latency_setting</th>" in html


def test_bench_of_a_folder_that_is_neither_run_nor_export(tmp_path, capfd):
    assert main(["bench", str(tmp_path)]) == 2
    err = capfd.readouterr().err.strip()
    assert "is neither a run folder" in err and "\n" not in err


def test_onnxruntime_path_overhead_is_what_one_path_adds_to_the_deployed_block(monkeypatch):
    """Under onnxruntime the overhead is timed on the exported form (fused, padded) and is what one more
    kernel path adds to a block that keeps another: with a made-up clock of 40 us a block, 15 us a depthwise
    conv and 2e-11 s a MAC, the fit must give 15 us in MAC-equivalents (the block and the other path are subtracted)."""
    from nni_hrnas import latency
    from nni_hrnas.latency import LatencyStats
    from search_spaces import costs

    per_mac, per_dw, per_block = 2e-11, 15e-6, 40e-6
    unit = costs.kernel_unit_macs(32, 32, 5, (16, 16), 1)

    def fake_runner(module, x, runtime):
        assert runtime == "onnxruntime"
        convs = list(module.mix.depthwise)  # the deployed form: one depthwise conv a kernel path
        assert all(c.out_channels % 8 == 0 for c in convs)
        channels = sum(c.out_channels for c in convs if c.kernel_size == (5, 5))
        return lambda: per_block + per_dw * len(convs) + per_mac * unit * channels

    def fake_time(run, warmup, repeats):
        seconds = run()
        return LatencyStats(seconds, seconds, seconds, seconds, seconds, repeats, warmup)

    monkeypatch.setattr(latency, "inference_runner", fake_runner)
    monkeypatch.setattr(latency, "time_latency", fake_time)
    got = latency.measure_path_overhead(runtime="onnxruntime", widths=(8, 128))
    assert got == pytest.approx(per_dw / per_mac, rel=1e-6)

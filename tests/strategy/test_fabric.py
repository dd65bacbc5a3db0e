"""The search on Lightning Fabric: two CPU processes in step (gloo), kill and resume, bf16, gathered metrics."""

from __future__ import annotations

import json

import pytest
import torch
from search_helpers import run_worker, tiny_search, training_calls

from nni_hrnas.search import load_searched_model
from nni_hrnas.strategy import DeviceSettings
from nni_hrnas.strategy.checkpoint import CHECKPOINT_NAME, save_searched

# 96 training images: 48 a rank, 3 steps an epoch on either rank; 17 validation images: uneven shards
TWO = dict(devices=2, epochs=3, evaluator=dict(n_train=96, n_val=17), **{"lambda": 0.2})
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _reloads_as_searched(folder) -> None:
    """The run folder's network reloads and gives the searched network's outputs (to float32 rounding:
    the searched outputs come from the channels-last network, and thread counts change the order of
    the convolutions' sums)."""
    with torch.no_grad():
        torch.testing.assert_close(
            load_searched_model(folder / "run")(X),
            torch.load(folder / "searched_outputs.pt"),
            rtol=1e-5,
            atol=1e-5,
        )


def test_two_processes_hold_the_same_network_at_every_prune_step(tmp_path):
    done = run_worker(dict(TWO, dir=str(tmp_path), record=True))
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["devices"]["world_size"] == 2
    steps = sorted(tmp_path.glob("hash_rank0_step*.json"))
    assert len(steps) == 3 and len(list(tmp_path.glob("hash_rank1_step*.json"))) == 3
    for k in range(1, 4):  # same architecture, same live and EMA weights and BN statistics on both ranks
        assert json.loads((tmp_path / f"hash_rank0_step{k}.json").read_text()) == json.loads(
            (tmp_path / f"hash_rank1_step{k}.json").read_text()
        ), k
    assert sum(t["units_removed"] for t in out["trajectory"]) > 0  # the prune steps did remove units
    assert training_calls(tmp_path, 0) == training_calls(tmp_path, 1) == 3 * 3
    assert out["search_cost"]["images_seen"] == 3 * 96  # both ranks' images
    # the checkpoint is written once per epoch, by rank zero only
    writes = (tmp_path / "checkpoint_writes.txt").read_text().split("\n")
    assert [w for w in writes if w] == ["0 1", "0 2", "0 3"]
    _reloads_as_searched(tmp_path)


def test_killed_rank_ends_the_group_and_two_processes_resume(tmp_path):
    killed = run_worker(dict(TWO, dir=str(tmp_path), kill_rank=1, kill_at_call=3 + 2), timeout=240)
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr.decode(), killed.stderr.decode()[-3000:]
    checkpoint = tmp_path / CHECKPOINT_NAME
    before = checkpoint.read_bytes()
    assert torch.load(checkpoint, weights_only=True)["state"]["epoch"] == 1  # killed in epoch 2

    one = run_worker(dict(TWO, dir=str(tmp_path), devices=1, resume=True))
    assert one.returncode != 0
    assert (
        "written by a search on 2 process(es)" in one.stderr.decode() and "--devices" in one.stderr.decode()
    )
    assert checkpoint.read_bytes() == before  # refused before anything ran, nothing overwritten

    calls = training_calls(tmp_path, 0)
    resumed = run_worker(dict(TWO, dir=str(tmp_path), resume=True))
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert json.loads((tmp_path / "out.json").read_text())["resumed_at_epoch"] == 1
    assert training_calls(tmp_path, 0) - calls == 2 * 3  # epochs 2 and 3 only
    _reloads_as_searched(tmp_path)


def test_bf16_mixed_search_prunes_and_exports_float32(tmp_path):
    strategy = tiny_search(lambda_=0.2, devices=DeviceSettings(accelerator="cpu", precision="bf16-mixed"))
    result = strategy.result
    assert result["devices"]["precision"] == "bf16-mixed"
    assert result["macs"] < result["macs_max"] and sum(t["units_removed"] for t in result["trajectory"]) > 0
    assert 0.0 <= result["metric"] <= 1.0
    from search_spaces import HRNASSpace

    config = __import__("dataclasses").asdict(HRNASSpace.from_preset("tiny").config)
    save_searched(tmp_path, result["arch"], strategy.model, dict(result, config=config))
    reloaded = load_searched_model(tmp_path)
    assert all(p.dtype == torch.float32 for p in reloaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(reloaded(X), strategy.model.eval()(X), rtol=0, atol=0)


def _evaluate_on_two(fabric, task_name: str) -> dict:
    from nni_hrnas.strategy.loop import evaluate
    from nni_hrnas.threads import enter_forked_rank

    enter_forked_rank(fabric.world_size)  # as the search's ranks do: without it a forked rank can hang

    loader, module, net = _evaluation_case(task_name)
    metric = evaluate(module, net, loader, fabric)
    return {"metric": metric, **getattr(module, "extra_metrics", {})}


def _evaluation_case(task_name: str):
    from nni_hrnas.tasks.registry import get_task
    from search_spaces import HRNASSpace

    spec = get_task(task_name)
    _, val = spec.make_datasets(smoke=True)
    val = torch.utils.data.Subset(val, range(min(len(val), 37))) if not hasattr(val, "coco_gt") else val
    loader = torch.utils.data.DataLoader(val, batch_size=4)
    module = spec.make_lightning_module()
    if hasattr(val, "coco_gt"):
        module.coco_gt = val.coco_gt()
    space = HRNASSpace.from_preset(
        spec.default_preset, input_size=spec.input_size(True), num_outputs=spec.num_outputs
    )
    torch.manual_seed(0)
    return loader, module, space.freeze(space.max_sample()).eval()


@pytest.mark.parametrize("task_name", ["digits_seg", "digits_cls", "digits_kp"])
def test_metrics_gathered_from_two_processes_equal_one_process(task_name):
    """mIoU, top-1/top-5 and OKS AP of the same network and validation set: two processes, each on
    its shard, merged, give the one-process value."""
    from nni_hrnas.strategy.loop import evaluate

    fabric = DeviceSettings(accelerator="cpu", devices=2).fabric()
    two = fabric.launch(_evaluate_on_two, task_name)
    loader, module, net = _evaluation_case(task_name)
    one = {"metric": evaluate(module, net, loader), **getattr(module, "extra_metrics", {})}
    assert set(two) == set(one)
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-12), key
    assert 0.0 <= one["metric"] <= 1.0

"""NNI's web server listens on 127.0.0.1 when started through `hrnas nnictl` (compat patch 5)."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from nni_hrnas.compat import LOOPBACK_JS

NODE = Path(__import__("nni_node").__path__[0]) / "node"


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs a process listens on, as the kernel reports them."""
    return {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


@pytest.mark.parametrize("host, expected", [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_the_preload_binds_a_listen_without_host_to_loopback_unless_exposed(host, expected, free_port):
    # the call NNI's RestServer makes: app.listen(port), no host
    script = (
        f"const s = require('http').createServer(); s.listen({free_port}, () => "
        "{ console.log(JSON.stringify(s.address())); s.close(); });"
    )
    env = {**os.environ, "NODE_OPTIONS": f'--require "{LOOPBACK_JS}"'}
    env.pop("HRNAS_NNI_HOST", None)
    if host:
        env["HRNAS_NNI_HOST"] = host
    out = subprocess.run(
        [str(NODE), "-e", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == {"address": expected, "family": "IPv4", "port": free_port}


@pytest.mark.slow
def test_hrnas_nnictl_serves_on_loopback_and_a_trial_reports_through_it(tmp_path, free_port):
    """Also: the trial learns the experiment's trialConcurrency, to split the cores (trial.py)."""
    config = {
        "searchSpace": {"x": {"_type": "choice", "_value": [1]}},
        # the trial reports the trialConcurrency it reads from NNI (compat patch 6)
        "trialCommand": f'{sys.executable} -c "import nni; from nni_hrnas.compat import nni_trial_concurrency; '
        'nni.get_next_parameter(); nni.report_final_result(float(nni_trial_concurrency()))"',
        "trialCodeDirectory": str(tmp_path),
        "trialConcurrency": 3,
        "maxTrialNumber": 1,
        "tuner": {"name": "Random"},
        "trainingService": {"platform": "local"},
        "experimentWorkingDirectory": str(tmp_path / "exp"),
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")])
        ),
    }
    env.pop("NODE_OPTIONS", None)
    env.pop("HRNAS_NNI_HOST", None)
    hrnas = [sys.executable, "-m", "nni_hrnas.cli", "nnictl"]
    created = subprocess.run(
        [*hrnas, "create", "--config", str(tmp_path / "config.yml"), "--port", str(free_port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert created.returncode == 0, created.stderr
    experiment_id = next(p.name for p in (tmp_path / "exp").iterdir() if p.name != "_latest")
    try:
        server = next(
            c.pid
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == free_port
        )
        assert listening_addresses(server) == {("127.0.0.1", free_port)}
        # the tuner and the trial still reach the server ("localhost"): the trial's result arrives
        database, deadline, done = (
            tmp_path / "exp" / experiment_id / "db" / "nni.sqlite",
            time.time() + 240,
            [],
        )
        while time.time() < deadline and not done:
            time.sleep(1)
            with sqlite3.connect(database) as db:
                done = db.execute("select data from MetricData where type = 'FINAL'").fetchall()
        assert [float(json.loads(json.loads(data))) for (data,) in done] == [3.0]
        assert listening_addresses(server) == {("127.0.0.1", free_port)}
    finally:
        subprocess.run([*hrnas, "stop", experiment_id], env=env, capture_output=True, timeout=120)


def test_hrnas_check_says_plain_nnictl_binds_every_interface(capsys):
    from nni_hrnas.cli import main

    assert main(["check", str(Path(__file__).parents[2] / "experiments" / "digits.yml")]) == 0
    err = capsys.readouterr().err
    assert "every interface" in err and "hrnas nnictl create" in err

"""A trial function for the fault tests: instant, exact, and able to hold one trial for a kill.

Spawned study workers unpickle :func:`fast_objective` by name (the parent's ``sys.path`` travels
with them). Its values are a closed form of the parameters, so a test checks every stored value
against its own computation. With ``HRNAS_TEST_HOLD=DIR`` the first trial to create
``DIR/victim.lock`` (atomically) writes its worker's pid to ``DIR/victim`` and waits to be killed:
the test kills that worker at a known point, inside a running trial, without timing guesses.
"""

import math
import os
import time
from pathlib import Path

import torch


def expected_values(params: dict) -> tuple[float, float]:
    """What a trial with ``params`` returns: (metric, MACs)."""
    return -((math.log10(params["lambda"]) + 3) ** 2), 1e6 * math.log10(1 / params["eps"])


def fast_objective(settings):
    def objective(trial):
        params = {
            "lambda": trial.suggest_float("lambda", *settings.lambda_range, log=True),
            "eps": trial.suggest_float("eps", *settings.eps_range, log=True),
        }
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("threads", [torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")])
        hold = os.environ.get("HRNAS_TEST_HOLD")
        if hold:
            try:
                os.close(
                    os.open(Path(hold) / "victim.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                )  # one victim
            except FileExistsError:
                pass
            else:
                (Path(hold) / "victim.tmp").write_text(f"{os.getpid()} {trial.number}")
                os.replace(Path(hold) / "victim.tmp", Path(hold) / "victim")  # complete when seen
                while True:  # until SIGKILL
                    time.sleep(60)
        return expected_values(params)

    return objective

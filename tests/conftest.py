import os
import socket
import sys
import warnings

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# `make test` runs the suite in one pytest-xdist worker per core (`-n auto`): each worker, and every
# process its tests start (searches, nnictl trials, study workers), then uses one thread, so that the
# workers do not oversubscribe the cores (two torch processes with default threads each ran a search
# more than ten times slower here). A plain `pytest` keeps torch's default.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)  # in case a plugin imported torch before this file
warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*")


@pytest.fixture
def free_port():
    """A TCP port reserved for the test, without a race: the socket that the kernel gave it stays bound
    (SO_REUSEADDR, never listening) until the test ends, so no other bind and no other port-0 request can
    take it, while NNI's web server (Node binds with SO_REUSEADDR too) can listen on it."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]

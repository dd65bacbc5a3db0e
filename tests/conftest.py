import os
import socket
import sys
import warnings

import pytest

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*")


@pytest.fixture
def free_port() -> int:
    """A free TCP port on loopback (NNI's web server binds it on all interfaces)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

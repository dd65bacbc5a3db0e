import os
import socket
import sys
import warnings

import pytest

sys.path.insert(0, os.path.dirname(__file__))
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

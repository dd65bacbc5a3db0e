"""``hrnas nnictl [--host HOST] ARGS...``: NNI's ``nnictl`` with its web server on 127.0.0.1.

``nnictl create``, ``resume`` and ``view`` start NNI's node server, which NNI 3.0 binds on every
interface (the REST API can stop experiments and read their logs). Through this command the
server binds 127.0.0.1 (compat patch 5); ``--host 0.0.0.0`` exposes it as plain ``nnictl`` does.

Example:
    $ hrnas nnictl create --config experiments/digits.yml --port 8080
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """Run nnictl with ``argv`` after binding the node servers it starts to the chosen host."""
    argv = list(argv)
    host = None
    if argv[:1] == ["--host"]:
        if len(argv) < 2:
            print("hrnas nnictl: error: --host needs an address, e.g. --host 127.0.0.1", file=sys.stderr)
            return 2
        host, argv = argv[1], argv[2:]
    from nni_hrnas.compat import serve_nni_on

    serve_nni_on(host)
    from nni.tools.nnictl.nnictl import parse_args

    sys.argv = ["nnictl", *argv]  # nnictl parses sys.argv itself
    parse_args()
    return 0

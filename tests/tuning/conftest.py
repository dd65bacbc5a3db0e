import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

INSTALL_HINT = (
    "PostgreSQL's server is not installed; `make test` installs it (apt-get install postgresql) "
    "when run as root, or install Debian's postgresql package yourself"
)


def _pg_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/VERSION/bin."""
    found = shutil.which("pg_ctl")
    candidates = ([Path(found).resolve().parent] if found else []) + [
        Path(p)
        for p in sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]), reverse=True
        )
    ]
    return next((d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


@pytest.fixture(scope="session")
def postgresql_url():
    """A real PostgreSQL server on 127.0.0.1 for the session; yields its SQLAlchemy URL.

    initdb refuses to run as root, so as root (CI) the server runs as the `postgres` user that
    Debian's package creates, in a folder of /tmp that user owns.
    """
    pytest.importorskip("psycopg", reason='pip install "psycopg[binary]" (in the dev extra)')
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip(INSTALL_HINT)
    as_user = None
    if os.geteuid() == 0:
        try:
            as_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip(
                "running as root and there is no `postgres` user to run the server as; " + INSTALL_HINT
            )
    root = Path(tempfile.mkdtemp(prefix="hrnas-pg-"))
    if as_user:
        os.chown(root, as_user.pw_uid, as_user.pw_gid)

    def run(*command: str) -> None:
        demote = (lambda: (os.setgid(as_user.pw_gid), os.setuid(as_user.pw_uid))) if as_user else None
        subprocess.run(command, check=True, capture_output=True, preexec_fn=demote, timeout=120, cwd=root)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run(str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "hrnas", "--no-sync")
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(root / "data"),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        "start",
    )
    try:
        yield f"postgresql://hrnas@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)

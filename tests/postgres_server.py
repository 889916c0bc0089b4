"""A throw-away PostgreSQL server for tests: ``initdb`` and ``pg_ctl`` on a temporary folder.

The server listens on 127.0.0.1 at a free port (password authentication, scram-sha-256) and
on a Unix socket in its own folder (trust, used only to create the database). As root it
runs as the ``postgres`` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Where Debian's ``postgresql`` package puts the server programs (not on PATH).
DEBIAN_BIN = Path("/usr/lib/postgresql")


def server_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else the newest
    ``/usr/lib/postgresql/<version>/bin``; None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    versions = sorted(DEBIAN_BIN.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``url`` (with its password) reaches the database ``database``."""

    url: str
    port: int
    password: str
    database: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_server(bin_dir: Path, database: str = "osteolens") -> Iterator[PostgresServer]:
    """Start a server in a new temporary folder, create ``database``, yield; stop and delete it after.

    Raises:
        RuntimeError: initdb, pg_ctl or createdb failed (the server log is in the message).
    """
    as_root = os.geteuid() == 0
    owner = dict(user="postgres", group=pwd.getpwnam("postgres").pw_gid) if as_root else {}
    root = Path(tempfile.mkdtemp(prefix="osteolens-pg-"))
    data, log, password = root / "data", root / "server.log", secrets.token_hex(12)
    (root / "pwfile").write_text(password + "\n")
    if as_root:
        for path in (root, root / "pwfile"):
            shutil.chown(path, "postgres", owner["group"])

    def run(*args: str) -> None:
        done = subprocess.run([str(bin_dir / args[0]), *args[1:]], capture_output=True, text=True, cwd=root, **owner)
        if done.returncode != 0:
            server_log = log.read_text() if log.is_file() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}{server_log}")

    port = free_port()
    started = False
    try:
        run("initdb", "-D", str(data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
            f"--pwfile={root / 'pwfile'}", "--encoding=UTF8", "--no-sync")
        # fsync off: a test server's data need not survive a power cut.
        run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off", "start")
        started = True
        run("createdb", "-h", str(root), "-p", str(port), "-U", "postgres", database)
        yield PostgresServer(f"postgresql://postgres:{password}@127.0.0.1:{port}/{database}", port, password, database)
    finally:
        try:
            if started:
                run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)

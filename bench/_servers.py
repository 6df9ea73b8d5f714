"""Helpers shared by the benchmarks: free ports and local daphne servers (loopback only)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(env: dict[str, str], ports: list[int], tmp: Path) -> list[subprocess.Popen]:
    procs = []
    for port in ports:
        log = open(tmp / f"daphne-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "contactcenter.asgi:application"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_healthy(ports: list[int], procs: list[subprocess.Popen], timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    for port, proc in zip(ports, procs, strict=True):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daphne on port {port} exited with {proc.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"daphne on port {port} did not become healthy in {timeout:.0f} s")
            time.sleep(0.25)

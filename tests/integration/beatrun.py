"""Run the real `healer` executable for `beat` and `hooks`, in a clean environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["HEALER", "heartbeat", "hook_env", "run", "unwritable"]

# The console script itself, so its entry point is what is tested (and timed).
HEALER = [str(Path(sys.executable).with_name("healer"))]


def hook_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without healer's variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALER_")}
    env.update(extra or {})
    return env


def run(cwd: Path, *args: str, stdin: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`healer ARGS` in `cwd`, stdin given (or /dev/null), output captured as text."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        [*HEALER, *args], cwd=cwd, env=hook_env(env), input=data,
        stdin=subprocess.DEVNULL if data is None else None, capture_output=True,
        timeout=timeout, check=False,
    )
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))


def heartbeat(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "heartbeat.json").read_text())
    return data


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """`folder` refuses new files, even to root (which ignores permission bits)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a folder unwritable for root here: {made.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)

"""Run the real `healer watch` as a subprocess and read its JSON log, for integration tests.

`running_daemon(...)` starts it, waits for `scan_finished`, and stops it with a signal on
exit, asserting a clean exit within two seconds; `DaemonProcess.wait_for` polls the log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "STOP_TIMEOUT",
    "DaemonProcess",
    "LogLine",
    "at",
    "poll_until",
    "run_healer",
    "running_daemon",
    "watch_args",
]

LogLine = dict[str, Any]
Predicate = Callable[[LogLine], bool]

STOP_TIMEOUT = 2.0  # SPEC §7: watch stops cleanly within 2 s
START_TIMEOUT = 15.0  # interpreter start-up and imports, generous for a loaded machine
# Variables of the caller's environment that would change what the daemon does.
_SCRUB_PREFIXES = ("HEALER_",)
_SCRUB = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def at(line: LogLine) -> float:
    """A log line's `timestamp` as epoch seconds (the daemon logs ISO 8601 UTC)."""
    return datetime.fromisoformat(line["timestamp"]).timestamp()


def watch_args(
    heal_after: float | None = 0.6, recover_after: float | None = 5.0,
    tick: float | None = 0.05, *extra: str,
) -> list[str]:
    """`watch` and its flags; pass None to leave a threshold to the config file."""
    args = ["watch"]
    for flag, value in (("--heal-after", heal_after), ("--recover-after", recover_after),
                        ("--tick", tick)):
        if value is not None:
            args += [flag, str(value)]
    return args + list(extra)


def poll_until(check: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `check` until it is true or `timeout` passes; returns its last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class DaemonProcess:
    """A running `healer watch`. Log lines are parsed on a reader thread into `lines`
    (JSON objects) and `raw` (anything else, e.g. a traceback)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="daemon-log", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for chunk in self.proc.stderr:
            text = chunk.decode(errors="replace").rstrip("\n")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            with self._cond:
                if isinstance(parsed, dict):
                    self.lines.append(parsed)
                else:
                    self.raw.append(text)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()  # end of stream: waiters re-check and see the exit

    # -- reading the log ----------------------------------------------------------------
    def snapshot(self) -> list[LogLine]:
        with self._cond:
            return list(self.lines)

    def events(self, event: str, **fields: Any) -> list[LogLine]:
        """Every line so far with this `event` name and these field values."""
        return [line for line in self.snapshot() if _matches(line, event, fields)]

    def wait_for(self, predicate: Predicate, timeout: float, what: str = "") -> LogLine:
        """The first line (old or new) that satisfies `predicate`; waits up to `timeout`
        seconds for it and fails with the log's tail if it does not come or the daemon
        exits first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.1))
        raise AssertionError(
            f"no log line {what or predicate!r} within {timeout}s "
            f"(exit code {self.proc.poll()})\n{self.tail()}"
        )

    def wait_event(self, event: str, timeout: float = 5.0, **fields: Any) -> LogLine:
        """The first line with this `event` and these field values."""
        return self.wait_for(lambda line: _matches(line, event, fields), timeout,
                             what=f"{event} {fields or ''}".strip())

    def tail(self, n: int = 40) -> str:
        with self._cond:
            lines = [json.dumps(line) for line in self.lines[-n:]] + self.raw[-n:]
        # watchdog's warnings can run to pages; the start of each line says enough.
        return "\n".join(line if len(line) <= 400 else line[:400] + " ..." for line in lines)

    # -- controlling it -----------------------------------------------------------------
    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and wait for the exit; fails (after killing it) if it takes longer
        than `timeout`. Returns the exit code; idempotent once the process has exited."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"healer watch did not exit within {timeout}s of "
                    f"{signal.Signals(sig).name}\n{self.tail()}"
                ) from None
        self._reader.join(STOP_TIMEOUT)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(STOP_TIMEOUT)


def _matches(line: LogLine, event: str, fields: Mapping[str, Any]) -> bool:
    return line.get("event") == event and all(line.get(k) == v for k, v in fields.items())


def daemon_env(config: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without healer's and systemd's variables, plus ours."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB
    }
    env["HEALER_CONFIG"] = str(config)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_healer(
    tmp_path: Path, *args: str, root: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """One `healer` command as a process in `tmp_path`, with its config there (an empty
    `healer-test.yml` unless the test wrote one) and `--workspaces root` when given."""
    config = tmp_path / "healer-test.yml"
    if not config.exists():
        config.write_text("")
    head = ["--workspaces", str(root)] if root is not None else []
    return subprocess.run(
        [sys.executable, "-m", "healer", *head, *args],
        cwd=tmp_path, env=daemon_env(config), capture_output=True, text=True, timeout=30,
    )


@contextmanager
def running_daemon(
    workspaces: Path,
    cwd: Path,
    args: Sequence[str] | None = None,
    *,
    config: Path | None = None,
    config_text: str = "",
    env: Mapping[str, str] | None = None,
    stop_signal: int | None = signal.SIGTERM,
    start_timeout: float = START_TIMEOUT,
) -> Iterator[DaemonProcess]:
    """Run `python -m healer --workspaces W --log-format json <args>` in `cwd`.

    The config comes from `config`, or a file `cwd/healer-test.yml` holding `config_text`
    (empty by default), so the repository's own config never applies. Yields once
    `scan_finished` is logged: READY and `watch_started` come when the root is watched,
    each agent's folders are watched just before its scan, in the loop's first steps.
    On exit the daemon gets `stop_signal` and must exit within STOP_TIMEOUT with code 0;
    `stop_signal=None` leaves stopping to the test, though a daemon still running is then
    killed and the block fails.
    """
    if config is None:
        config = cwd / "healer-test.yml"
        config.write_text(config_text)
    command = [sys.executable, "-m", "healer", "--workspaces", str(workspaces),
               "--log-format", "json", *(args if args is not None else watch_args())]
    proc = subprocess.Popen(
        command, cwd=cwd, env=daemon_env(config, env),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    daemon = DaemonProcess(proc)
    try:
        daemon.wait_event("scan_finished", timeout=start_timeout)
        yield daemon
    except BaseException:
        daemon.kill()
        raise
    if stop_signal is None:
        running = proc.poll() is None
        daemon.kill()
        assert not running, "the test left healer watch running"
        return
    code = daemon.stop(stop_signal)
    assert code == 0, f"healer watch exited with {code}\n{daemon.tail()}"

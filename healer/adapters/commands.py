"""Runs operator commands (SPEC §13) off the caller's thread: argv only, never a shell, each
in its own process group that is killed at its timeout. Results come back through drain().
Past 300 lines: the pool, the group kill and the bounded output capture belong together."""

from __future__ import annotations

import contextlib
import enum
import math
import os
import queue
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from healer.adapters.drainer import PipeDrainer
from healer.core.commands import CommandRequest, CommandResult

__all__ = ["OUTPUT_LIMIT", "SubprocessCommandRunner", "tail_text"]

OUTPUT_LIMIT = 1024  # bytes of output kept: the tail, where the error usually is
GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a timed-out group
# The same when healer stops: a daemon must exit within 2 s of its SIGTERM (SPEC §7).
STOP_GRACE = 0.5
MAX_PENDING = 10_000
_POLL_FALLBACK = 0.05  # how often a process is checked where pidfds are missing
_FINAL_READ = 1 << 20  # bytes read after the command exited, before the rest is discarded


class _Kill(enum.Enum):
    """Why a run's process group was killed."""

    TIMEOUT = "timeout"
    STOPPED = "stopped"  # close() gave up waiting for it


class SubprocessCommandRunner:
    """A bounded pool of worker threads, each running one command at a time (the
    CommandRunner of healer.ports)."""

    def __init__(
        self,
        parallel: int = 4,
        *,
        wake: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        now: Callable[[], float] = time.time,
        grace: float = GRACE,
        stop_grace: float = STOP_GRACE,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.wake = wake if wake is not None else threading.Event()
        self.parallel = max(1, parallel)
        self._env = env
        self._now = now
        self._grace = grace
        self._stop_grace = min(grace, stop_grace)
        self._max_pending = max_pending
        self._pending: queue.Queue[CommandRequest | None] = queue.Queue()
        self._results: deque[CommandResult] = deque()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._stop_r, self._stop_w = os.pipe()  # readable once close() gives up waiting
        self._drainer = PipeDrainer()
        self.running = 0  # commands between start and result, for tests and metrics

    # -- the caller's side ----------------------------------------------------------------
    def submit(self, request: CommandRequest) -> None:
        """Queue a run; never blocks. A run that cannot be queued gets its result at once."""
        with self._lock:
            closed = self._closed
            full = self._pending.qsize() >= self._max_pending
            if not closed and not full:
                if len(self._workers) < self.parallel:
                    self._start_workers()
                # Under the lock, so a close() in between cannot leave it queued unseen.
                self._pending.put(request)
        if closed:
            self._post(_not_run(request, "not run: healer is stopping", self._now()))
        elif full:
            self._post(_not_run(request, f"not run: {self._max_pending} commands already "
                                         "waiting", self._now()))

    def drain(self) -> list[CommandResult]:
        """Every result ready so far, oldest first."""
        out: list[CommandResult] = []
        if not self._results:
            return out  # every step asks; a result added meanwhile is taken at the next
        with self._lock:
            while self._results:
                out.append(self._results.popleft())
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Run nothing more; wait up to `timeout` for running commands, then kill them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        while True:
            try:
                request = self._pending.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                self._post(_not_run(request, "not run: healer stopped first", self._now()))
        for _ in workers:
            self._pending.put(None)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if any(w.is_alive() for w in workers):
            os.write(self._stop_w, b"x")  # level-triggered: every worker's poll sees it
            for worker in workers:
                worker.join(self._stop_grace + 5.0)
        self._drainer.close()
        if not any(w.is_alive() for w in workers):
            os.close(self._stop_r)
            os.close(self._stop_w)

    # -- the workers' side ----------------------------------------------------------------
    def _start_workers(self) -> None:
        while len(self._workers) < self.parallel:
            worker = threading.Thread(
                target=self._work, name=f"healer-command-{len(self._workers) + 1}", daemon=True
            )
            self._workers.append(worker)
            worker.start()

    def _post(self, result: CommandResult) -> None:
        with self._lock:
            self._results.append(result)
        self.wake.set()

    def _work(self) -> None:
        while True:
            request = self._pending.get()
            if request is None:
                return
            with self._lock:
                self.running += 1
            try:
                result = self._run(request)
            except Exception as exc:  # a worker that dies would silently shrink the pool
                result = _not_run(request, f"{type(exc).__name__}: {exc}", self._now())
            finally:
                with self._lock:
                    self.running -= 1
            self._post(result)

    def _run(self, request: CommandRequest) -> CommandResult:
        argv = request.argv()
        cwd = request.agent_dir or request.workspaces
        env = {**(os.environ if self._env is None else self._env), **request.environment()}
        started = time.monotonic()
        if not os.path.isdir(cwd):
            return _not_run(request, f"not run: working folder {cwd!r} does not exist",
                            self._now())
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            return _not_run(request, _spawn_error(exc, argv[0], cwd), self._now())
        try:
            watch = _Watch(proc, self._stop_r, self._grace, self._stop_grace)
            killed = watch.run(request.spec.timeout, self._drainer)
        except BaseException:
            _signal_group(proc.pid, signal.SIGKILL)  # never leave a run nobody watches
            raise
        duration = time.monotonic() - started
        code = proc.returncode
        error = None
        if killed is _Kill.TIMEOUT:
            error = (f"timed out after {request.spec.timeout:g}s; its process group was "
                     "killed")
        elif killed is _Kill.STOPPED:
            error = "killed: healer stopped while it ran"
        return CommandResult(
            request, ok=killed is None and code == 0, exit_code=code, duration=duration,
            output=tail_text(bytes(watch.tail)), timed_out=killed is _Kill.TIMEOUT, error=error,
            ended_at=self._now(),
        )


class _Watch:
    """One running command: its output so far, and how far its kill has gone. At the
    timeout (or at close) its group gets SIGTERM, then SIGKILL after the grace; a normal
    exit leaves whatever it started alone."""

    def __init__(
        self, proc: subprocess.Popen[bytes], stop_fd: int, grace: float, stop_grace: float
    ) -> None:
        assert proc.stdout is not None
        self.proc, self.grace, self.stop_fd = proc, grace, stop_fd
        self.stop_grace = stop_grace
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.pidfd = _pidfd(proc.pid)
        self.poller = select.poll()
        for fd in (self.fd, stop_fd, self.pidfd):
            if fd is not None:
                self.poller.register(fd, select.POLLIN)
        self.tail = bytearray()
        self.eof = False
        self.killed: _Kill | None = None  # set when the TERM goes out
        self.kill_at = math.inf  # when the KILL goes out
        self.give_up_at = math.inf  # a leader that outlives SIGKILL (uninterruptible) is left

    def run(self, timeout: float, drainer: PipeDrainer) -> _Kill | None:
        deadline = time.monotonic() + timeout
        try:
            while not self._finished():
                now = time.monotonic()
                if self.killed is None and now >= deadline:
                    self._terminate(_Kill.TIMEOUT, now)
                elif now >= self.kill_at:
                    self._kill(now)
                wake_at = deadline if self.killed is None else min(self.kill_at, self.give_up_at)
                self._wait(min(wake_at, now + 3600.0) - now)
            if self.killed is not None and self.kill_at != math.inf:
                # The leader exited but is not reaped yet, so its pid cannot have been
                # reused: what is left of its group (a child that ignored TERM) dies now.
                self._kill(time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0 if self.give_up_at != math.inf else None)
            if not self.eof:
                self.eof = _read_into(self.fd, self.tail, _FINAL_READ) is False
        finally:
            if self.pidfd is not None:
                os.close(self.pidfd)
        assert self.proc.stdout is not None
        if not self.eof:
            # A child it left running still holds the pipe: keep reading, so that child is
            # never stopped by a full pipe or a SIGPIPE.
            drainer.adopt(os.dup(self.fd))
        self.proc.stdout.close()
        return self.killed

    def _finished(self) -> bool:
        if time.monotonic() >= self.give_up_at:
            return True
        if not _exited(self.proc.pid):
            return False
        if self.pidfd is not None:  # readable for good now: stop polling it
            self.poller.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        # After a TERM, wait for the pipe to close too (or the grace to end): a child that
        # still holds it is still running and gets the KILL.
        return self.killed is None or self.eof or self.kill_at == math.inf

    def _terminate(self, why: _Kill, now: float) -> None:
        grace = self.stop_grace if why is _Kill.STOPPED else self.grace
        self.killed, self.kill_at = why, now + grace
        _signal_group(self.proc.pid, signal.SIGTERM)

    def _kill(self, now: float) -> None:
        self.kill_at, self.give_up_at = math.inf, now + 5.0
        _signal_group(self.proc.pid, signal.SIGKILL)

    def _wait(self, seconds: float) -> None:
        if self.pidfd is None:  # nothing wakes the poll when the leader exits: look often
            seconds = min(seconds, _POLL_FALLBACK)
        for ready, _event in self.poller.poll(max(0.0, seconds) * 1000):
            if ready == self.fd and _read_into(self.fd, self.tail) is False:
                self.eof = True
                self.poller.unregister(self.fd)
            elif ready == self.stop_fd:
                self.poller.unregister(self.stop_fd)
                now = time.monotonic()
                if self.killed is None:
                    self._terminate(_Kill.STOPPED, now)
                elif self.kill_at != math.inf:  # already timed out: healer will not wait long
                    self.kill_at = min(self.kill_at, now + self.stop_grace)


def _read_into(fd: int, tail: bytearray, limit: int = 1 << 18) -> bool | None:
    """Append what the pipe holds to `tail` (keeping its end); False at EOF, None when
    nothing more is there for now."""
    read = 0
    while read < limit:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return None
        except OSError:  # nothing more can come from this pipe
            return False
        if not chunk:
            return False
        read += len(chunk)
        tail += chunk
        if len(tail) > 2 * OUTPUT_LIMIT:
            del tail[:-OUTPUT_LIMIT]
    return None


def tail_text(data: bytes, limit: int = OUTPUT_LIMIT) -> str:
    """The last `limit` bytes as text, never more than `limit` bytes once encoded."""
    data = data[-limit:]
    if len(data) == limit:
        data = data.lstrip(bytes(range(0x80, 0xC0)))[:limit] or data  # a cut character
    text = data.decode("utf-8", "replace")
    encoded = text.encode("utf-8")
    if len(encoded) > limit:  # replacement characters are longer than the bytes they stand for
        text = encoded[-limit:].decode("utf-8", "ignore")
    return text


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # an old kernel: poll instead
        return None


def _exited(pid: int) -> bool:
    """Whether the leader exited, without reaping it (its pid stays ours to signal)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _spawn_error(exc: OSError, program: str, cwd: str) -> str:
    if exc.filename == cwd and program != cwd:
        return f"not run: cannot enter working folder {cwd!r}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        return f"not found: {program!r} ({exc.strerror})"
    if isinstance(exc, PermissionError):
        return f"not executable: {program!r} ({exc.strerror})"
    return f"cannot run {program!r}: {exc.strerror or exc}"


def _not_run(request: CommandRequest, reason: str, now: float) -> CommandResult:
    return CommandResult(request, ok=False, exit_code=None, duration=0.0, error=reason,
                         ended_at=now)

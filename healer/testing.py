"""Test helpers shipped with the package: a clock that only moves when told."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A Clock for tests: time moves only through advance() or set(), never backwards."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a FakeClock never moves backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> float:
        if when < self._now:
            raise ValueError("a FakeClock never moves backwards")
        self._now = float(when)
        return self._now


# -- RecordingCommandRunner: the CommandRunner port (healer.adapters.commands) in memory ----
from collections.abc import Callable as _Callable  # noqa: E402 -- kept with the fake it serves
from threading import Event as _Event  # noqa: E402

from healer.core.commands import CommandRequest, CommandResult  # noqa: E402

__all__ += ["RecordingCommandRunner"]


class RecordingCommandRunner:
    """A CommandRunner for tests: records each request; a run ends when the test calls
    finish(), or at once with what `respond` returns for it."""

    def __init__(
        self,
        respond: _Callable[[CommandRequest], CommandResult | None] | None = None,
        *,
        wake: _Event | None = None,
        now: _Callable[[], float] | None = None,
    ) -> None:
        self.wake = wake if wake is not None else _Event()
        self.submitted: list[CommandRequest] = []
        self.closed = False
        self._respond = respond
        self._now = now
        self._unfinished: list[CommandRequest] = []
        self._results: list[CommandResult] = []

    @property
    def unfinished(self) -> list[CommandRequest]:
        """Submitted runs without a result yet, oldest first."""
        return list(self._unfinished)

    def submit(self, request: CommandRequest) -> None:
        self.submitted.append(request)
        if self.closed:
            self._post(CommandResult(request, False, None, 0.0,
                                     error="not run: healer is stopping", ended_at=self._at()))
            return
        self._unfinished.append(request)
        result = self._respond(request) if self._respond is not None else None
        if result is not None:
            self._unfinished.remove(request)
            self._post(result)

    def finish(
        self,
        request: CommandRequest | None = None,
        *,
        exit_code: int | None = 0,
        output: str = "",
        duration: float = 0.0,
        timed_out: bool = False,
        error: str | None = None,
    ) -> CommandResult:
        """End a run (the oldest unfinished one by default) as a real one would."""
        if request is None:
            if not self._unfinished:
                raise AssertionError("no unfinished command to finish")
            request = self._unfinished[0]
        self._unfinished.remove(request)
        result = CommandResult(
            request, ok=exit_code == 0 and not timed_out and error is None, exit_code=exit_code,
            duration=duration, output=output, timed_out=timed_out, error=error,
            ended_at=self._at(),
        )
        self._post(result)
        return result

    def drain(self) -> list[CommandResult]:
        out, self._results = self._results, []
        return out

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True

    def _at(self) -> float:
        return self._now() if self._now is not None else 0.0

    def _post(self, result: CommandResult) -> None:
        self._results.append(result)
        self.wake.set()

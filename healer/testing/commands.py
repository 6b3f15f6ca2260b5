"""A command runner for tests: records each request; runs end when the test says."""

from __future__ import annotations

from collections.abc import Callable
from threading import Event

from healer.core.commands import CommandRequest, CommandResult

__all__ = ["RecordingCommandRunner"]


class RecordingCommandRunner:
    """A CommandRunner for tests: records each request; a run ends when the test calls
    finish(), or at once with what `respond` returns for it."""

    def __init__(
        self,
        respond: Callable[[CommandRequest], CommandResult | None] | None = None,
        *,
        wake: Event | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.wake = wake if wake is not None else Event()
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

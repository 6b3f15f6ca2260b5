"""What every alert target shares: the alert and its kinds, an HTTP POST with retries, backoff
and Retry-After, secrets kept out of the log, and a worker thread with one close() semantics."""

from __future__ import annotations

import base64
import email.utils
import http.client
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from healer import __version__
from healer.core.model import Transition

__all__ = [
    "HUMAN_TRANSITIONS", "Alert", "Delivery", "Poster", "Transition", "Worker", "retry_after",
]

_REDACTED = "<redacted>"

log = structlog.get_logger()


# What a person is told of in a chat or a webhook; the others only end an Alertmanager
# alert (the operator who ran `resolve` knows already).
HUMAN_TRANSITIONS = frozenset({
    Transition.STALLED, Transition.ESCALATED, Transition.RECOVERED, Transition.WAITING,
    Transition.FLAPPING, Transition.SWARM_OUTAGE, Transition.SWARM_RECOVERED,
})


@dataclass(frozen=True, slots=True)
class Alert:
    """One incident transition to tell the operator about."""

    agent: str
    transition: Transition
    timestamp: float
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one HTTP attempt: whether it worked, and whether another try may help."""

    ok: bool
    retryable: bool
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A webhook that redirects is misconfigured; following it would hand the alert (and any
    # token in the path) to a host the operator never named.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Poster:
    """POSTs JSON with retries. Shared by every target's worker; it holds no per-call state."""

    def __init__(
        self,
        urls: Iterable[str],
        *,
        timeout: float = 5.0,
        max_tries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._secrets = _secret_parts(urls)
        self._timeout = timeout
        self._max_tries = max(1, max_tries)
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()  # workers share the generator
        self._opener = urllib.request.build_opener(_NoRedirect())

    def deliver(self, url: str, body: bytes, stop: threading.Event) -> tuple[Delivery, int]:
        """POST until it works, fails for good or `stop` is set; returns the last outcome and
        the number of tries."""
        tries = 0
        result = Delivery(ok=False, retryable=True)
        while tries < self._max_tries:
            tries += 1
            result = self.post(url, body)
            if result.ok or not result.retryable or tries >= self._max_tries:
                break
            if stop.wait(self._delay(tries, result.retry_after)):
                break
        return result, tries

    def post(self, url: str, body: bytes) -> Delivery:
        headers = {"Content-Type": "application/json", "User-Agent": f"healer/{__version__}"}
        try:
            target, auth = _split_credentials(url)
            if auth:
                headers["Authorization"] = auth
            request = urllib.request.Request(target, data=body, method="POST", headers=headers)
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read()
                return Delivery(ok=True, retryable=False, status=response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            wait = retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            exc.close()
            return Delivery(
                ok=False,
                retryable=status == 429 or status >= 500,
                status=status,
                retry_after=wait if status == 429 else None,
            )
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            # Timeouts, refused connections, resets and bad URLs; the text is scrubbed because
            # some of these messages quote the URL.
            reason = getattr(exc, "reason", exc)
            text = f"{type(exc).__name__}: {reason}"
            malformed = isinstance(exc, ValueError | http.client.InvalidURL)
            return Delivery(ok=False, retryable=not malformed, error=self.scrub(text))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _delay(self, tries: int, wait: float | None) -> float:
        if wait is not None:
            return min(max(wait, 0.0), self._max_retry_after)
        base = self._backoff * 2.0 ** (tries - 1)
        # Equal jitter: never less than half the step, so retries stay spaced out.
        with self._rng_lock:
            return base / 2 + self._rng.uniform(0.0, base / 2)


class Worker:
    """A daemon thread serving one target. A hung target blocks only its own worker; close()
    lets each drain until a shared deadline, then abandons what is left."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        # Set only when close() gives up: it cuts backoff waits short and abandons the rest.
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"healer-alerts-{name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def accepts(self, transition: Transition) -> bool:
        """Whether this target is told of `transition` at all."""
        return True

    def put(self, alert: Alert) -> None:
        """Queue `alert`; never blocks on the network. A closing worker drops it."""
        with self._cond:
            if self._closing:
                self.dropped += 1
                log.warning("alert_dropped", agent=alert.agent, transition=alert.transition.value,
                            target=self.name, reason="closed")
                return
            if self._enqueue(alert):
                self._cond.notify()

    def _enqueue(self, alert: Alert) -> bool:
        """Take `alert` into the backlog (the lock is held); True if there is work now."""
        raise NotImplementedError

    def pending(self) -> int:
        """Work queued or being delivered right now."""
        with self._cond:
            return self._backlog() + (1 if self._busy else 0)

    def begin_close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` for the worker to finish; True when it has."""
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def abandon(self) -> int:
        """Give up on what is left (close() ran out of time); returns how much that was."""
        self._stop.set()
        with self._cond:
            abandoned = self._backlog() + (1 if self._busy else 0)
            self._discard()
            self.dropped += abandoned
        return abandoned

    # -- for subclasses: all called with the condition held, except _do ------------------
    def _backlog(self) -> int:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def _take(self) -> Any:
        """The next job, or None when there is none now."""
        raise NotImplementedError

    def _idle_timeout(self) -> float | None:
        """How long to wait for work before _take() is asked again (None: until notified)."""
        return None

    def _do(self, job: Any) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._take()
                while job is None and not self._closing:
                    self._cond.wait(self._idle_timeout())
                    job = self._take()
                if job is None or self._stop.is_set():
                    return
                self._busy = True
            try:
                self._do(job)
            except Exception as exc:  # a bug here must not kill every later alert
                log.error("alert_worker_error", target=self.name, error=repr(exc))
            finally:
                with self._cond:
                    self._busy = False


def _split_credentials(url: str) -> tuple[str, str | None]:
    """`http://user:pass@host/...` to the URL without them and a Basic header: urllib would
    take `user:pass@host` for the host name."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def _secret_parts(urls: Iterable[str]) -> list[str]:
    # The whole URL, its path and query alone, and a password: webhook tokens live there,
    # and an error message may quote any of them.
    parts: set[str] = set()
    for url in urls:
        parts.add(url)
        rest = url.split("://", 1)[-1]
        if "/" in rest:
            path = rest[rest.index("/") :]
            if len(path) > 1:
                parts.add(path)
        try:
            password = urllib.parse.urlsplit(url).password
        except ValueError:
            password = None
        if password:
            parts.add(password)
    return sorted(parts, key=len, reverse=True)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

"""Alert delivery: Discord and/or a JSON webhook, from a worker thread behind a bounded queue.

`send()` never blocks detection; the worker retries with backoff and logs `alert_sent`.
Past 300 lines: queue, retry and the payloads of each target share the one worker.
"""

from __future__ import annotations

import collections
import email.utils
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from healer import __version__
from healer.clock import SystemClock
from healer.config import AlertsConfig
from healer.core.isotime import iso
from healer.core.model import Transition
from healer.ports import Clock

__all__ = ["DISCORD_ENV", "TRANSITIONS", "Alert", "Alerter", "Delivery"]

DISCORD_ENV = "HEALER_DISCORD_WEBHOOK"
TRANSITIONS = frozenset(Transition)

_DISCORD_MAX_CONTENT = 2000  # Discord rejects longer messages with a 400
_REDACTED = "<redacted>"

log = structlog.get_logger()


@dataclass(frozen=True)
class Alert:
    """One incident transition to tell the operator about."""

    agent: str
    transition: Transition
    timestamp: float
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
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


class Alerter:
    """Queues alerts and delivers them on a daemon worker thread.

    Counters (`sent`, `failed`, `dropped`) count deliveries per target, for metrics.
    """

    def __init__(
        self,
        discord_url: str | None = None,
        webhook_url: str | None = None,
        timeout: float = 5.0,
        max_tries: int = 3,
        backoff: float = 0.5,
        *,
        queue_size: int = 256,
        max_retry_after: float = 30.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._targets: list[tuple[str, str]] = []
        if discord_url:
            self._targets.append(("discord", discord_url))
        if webhook_url:
            self._targets.append(("webhook", webhook_url))
        self._secrets = _secret_parts(url for _, url in self._targets)
        self._timeout = timeout
        self._max_tries = max(1, max_tries)
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._opener = urllib.request.build_opener(_NoRedirect())

        self._queue: collections.deque[Alert] = collections.deque()
        self._queue_size = max(1, queue_size)
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        # Set only when close() gives up: it cuts backoff waits short and abandons the queue.
        self._stop = threading.Event()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="healer-alerts", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(
        cls,
        webhook_url: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Alerter:
        """Build an Alerter whose Discord URL comes only from `HEALER_DISCORD_WEBHOOK`."""
        env = os.environ if environ is None else environ
        discord = env.get(DISCORD_ENV, "").strip() or None
        return cls(discord, webhook_url or None, **kwargs)

    @classmethod
    def from_config(cls, alerts: AlertsConfig, **kwargs: Any) -> Alerter:
        """The one way `watch` and `check --now` build their alerter: every setting of
        `healer.alerts` applies to both."""
        return cls.from_env(
            alerts.webhook_url, timeout=alerts.timeout, max_tries=alerts.max_tries,
            backoff=alerts.backoff, **kwargs,
        )

    @property
    def targets(self) -> tuple[str, ...]:
        """Names of the configured targets ("discord", "webhook"); empty means log only."""
        return tuple(name for name, _ in self._targets)

    def send(self, agent: str, transition: str, details: Mapping[str, Any] | None = None) -> None:
        """Queue an alert and return at once; a full queue loses its oldest alert."""
        if transition not in TRANSITIONS:
            log.error(
                "alert_rejected", agent=agent, transition=transition, reason="unknown transition"
            )
            return
        alert = Alert(agent, Transition(transition), self._clock.now(), dict(details or {}))
        with self._cond:
            if self._closing:
                self.dropped += 1
                log.warning("alert_dropped", agent=agent, transition=transition, reason="closed")
                return
            if len(self._queue) >= self._queue_size:
                # The newest news about an incident matters more than the oldest.
                old = self._queue.popleft()
                self.dropped += 1
                log.warning(
                    "alert_dropped", agent=old.agent, transition=old.transition, reason="queue full"
                )
            self._queue.append(alert)
            self._cond.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what can be delivered within `timeout` seconds, then abandon the rest."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            return
        self._stop.set()
        with self._cond:
            abandoned = len(self._queue) + (1 if self._busy else 0)
            self._queue.clear()
            self.dropped += abandoned
        # The worker may still sit in one HTTP request (bounded by the request timeout); it
        # is a daemon thread and exits after it, so close() need not wait for it.
        log.warning("alerts_abandoned", dropped=abandoned)

    # -- worker -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._stop.is_set():
                    return
                alert = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(alert)
            except Exception as exc:  # a bug here must not kill every later alert
                log.error("alert_worker_error", agent=alert.agent, error=self._scrub(repr(exc)))
            finally:
                with self._cond:
                    self._busy = False

    def _deliver(self, alert: Alert) -> None:
        if not self._targets:
            self.sent += 1
            log.info(
                "alert_sent",
                agent=alert.agent,
                transition=alert.transition,
                ok=True,
                tries=1,
                target="log",
                details=dict(alert.details),
            )
            return
        for target, url in self._targets:
            if self._stop.is_set():
                return
            body = _discord_payload(alert) if target == "discord" else _webhook_payload(alert)
            self._deliver_one(alert, target, url, body)

    def _deliver_one(self, alert: Alert, target: str, url: str, body: bytes) -> None:
        tries = 0
        result = Delivery(ok=False, retryable=True)
        while tries < self._max_tries:
            tries += 1
            result = self._post(url, body)
            if result.ok or not result.retryable or tries >= self._max_tries:
                break
            if self._stop.wait(self._delay(tries, result.retry_after)):
                break  # close() gave up; this alert is counted as abandoned there
        if self._stop.is_set() and not result.ok:
            return
        fields: dict[str, Any] = {
            "agent": alert.agent,
            "transition": alert.transition,
            "ok": result.ok,
            "tries": tries,
            "target": target,
        }
        if result.status is not None:
            fields["status"] = result.status
        if result.error:
            fields["error"] = result.error
        if result.ok:
            self.sent += 1
            log.info("alert_sent", **fields)
        else:
            self.failed += 1
            log.warning("alert_sent", **fields)

    def _delay(self, tries: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self._max_retry_after)
        base = self._backoff * 2.0 ** (tries - 1)
        # Equal jitter: never less than half the step, so retries stay spaced out.
        return base / 2 + self._rng.uniform(0.0, base / 2)

    def _post(self, url: str, body: bytes) -> Delivery:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": f"healer/{__version__}"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                response.read()
                return Delivery(ok=True, retryable=False, status=response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            exc.close()
            return Delivery(
                ok=False,
                retryable=status == 429 or status >= 500,
                status=status,
                retry_after=retry_after if status == 429 else None,
            )
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            # Timeouts, refused connections, resets and bad URLs; the text is scrubbed because
            # some of these messages quote the URL.
            reason = getattr(exc, "reason", exc)
            text = f"{type(exc).__name__}: {reason}"
            malformed = isinstance(exc, ValueError | http.client.InvalidURL)
            return Delivery(ok=False, retryable=not malformed, error=self._scrub(text))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text


def _secret_parts(urls: Any) -> list[str]:
    # The whole URL, and its path and query alone: webhook tokens live there, and an error
    # message may quote either.
    parts: set[str] = set()
    for url in urls:
        parts.add(url)
        rest = url.split("://", 1)[-1]
        if "/" in rest:
            path = rest[rest.index("/") :]
            if len(path) > 1:
                parts.add(path)
    return sorted(parts, key=len, reverse=True)


def _retry_after(value: str | None) -> float | None:
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


def _webhook_payload(alert: Alert) -> bytes:
    payload = {
        "agent": alert.agent,
        "transition": alert.transition,
        "timestamp": iso(alert.timestamp),
        "details": dict(alert.details),
    }
    return json.dumps(payload, default=str).encode()


def _discord_line(alert: Alert) -> str:
    extra = ", ".join(f"{key}={value}" for key, value in alert.details.items())
    line = f"healer: {alert.agent} {alert.transition} at {iso(alert.timestamp)}"
    if extra:
        line += f" ({extra})"
    # One line: details may carry newlines (task titles), which would split the message.
    line = " ".join(line.split())
    if len(line) > _DISCORD_MAX_CONTENT:
        line = line[: _DISCORD_MAX_CONTENT - 1] + "…"
    return line


def _discord_payload(alert: Alert) -> bytes:
    return json.dumps({"content": _discord_line(alert)}).encode()

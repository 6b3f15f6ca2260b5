"""Alert delivery: Discord, a JSON webhook and Alertmanager, each target with a worker thread
and a bounded queue of its own, so a hung target never delays another.

`send()` never blocks detection; each worker retries with backoff and logs `alert_sent`.
"""

from __future__ import annotations

import collections
import json
import os
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from healer.adapters.alertmanager import DEFAULT_TTL, AlertmanagerWorker, Origin
from healer.adapters.delivery import (
    HUMAN_TRANSITIONS,
    Alert,
    Delivery,
    Poster,
    Transition,
    Worker,
)
from healer.clock import SystemClock
from healer.config import AlertsConfig
from healer.core.isotime import iso
from healer.ports import Clock

__all__ = [
    "DISCORD_ENV",
    "HUMAN_TRANSITIONS",
    "TRANSITIONS",
    "Alert",
    "Alerter",
    "Delivery",
    "Transition",
]

DISCORD_ENV = "HEALER_DISCORD_WEBHOOK"
TRANSITIONS = frozenset(Transition)

_DISCORD_MAX_CONTENT = 2000  # Discord rejects longer messages with a 400

log = structlog.get_logger()


class Alerter:
    """Fans each alert out to the targets that take it, one worker per target.

    Counters (`sent`, `failed`, `dropped`) add up the targets' deliveries, for metrics.
    """

    def __init__(
        self,
        discord_url: str | None = None,
        webhook_url: str | None = None,
        timeout: float = 5.0,
        max_tries: int = 3,
        backoff: float = 0.5,
        *,
        alertmanager_urls: Sequence[str] = (),
        swarm: str = "",
        workspaces: Path | None = None,
        host: str | None = None,
        alertmanager_ttl: float | None = None,
        queue_size: int = 256,
        max_retry_after: float = 30.0,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        urls = [u for u in (discord_url, webhook_url, *alertmanager_urls) if u]
        poster = Poster(urls, timeout=timeout, max_tries=max_tries, backoff=backoff,
                        max_retry_after=max_retry_after, rng=rng)
        self._workers: list[Worker] = []
        if discord_url:
            self._workers.append(_QueueWorker("discord", discord_url, poster, queue_size))
        if webhook_url:
            self._workers.append(_QueueWorker("webhook", webhook_url, poster, queue_size))
        origin = Origin(host or socket.gethostname(), swarm, workspaces)
        for n, url in enumerate(alertmanager_urls, start=1):
            name = "alertmanager" if len(alertmanager_urls) == 1 else f"alertmanager-{n}"
            self._workers.append(AlertmanagerWorker(
                name, url, poster, origin, self._clock, monotonic=monotonic,
                ttl=alertmanager_ttl or DEFAULT_TTL,
            ))
        if not self._workers:
            self._workers.append(_QueueWorker("log", None, poster, queue_size))
        self._poster = poster
        for worker in self._workers:
            worker.start()

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
    def from_config(
        cls,
        alerts: AlertsConfig,
        *,
        workspaces: Path | None = None,
        swarm: str = "",
        **kwargs: Any,
    ) -> Alerter:
        """The one way `watch` and `check --now` build their alerter: every setting of
        `healer.alerts` applies to both; `swarm` is `healer.swarm.name`."""
        return cls.from_env(
            alerts.webhook_url, timeout=alerts.timeout, max_tries=alerts.max_tries,
            backoff=alerts.backoff, alertmanager_urls=alerts.alertmanager_url,
            workspaces=workspaces, swarm=swarm, **kwargs,
        )

    @property
    def targets(self) -> tuple[str, ...]:
        """Names of the configured targets ("discord", "webhook", "alertmanager"); a lone
        "log" means no URL is configured."""
        return tuple(w.name for w in self._workers if w.name != "log")

    @property
    def sent(self) -> int:
        return sum(w.sent for w in self._workers)

    @property
    def failed(self) -> int:
        return sum(w.failed for w in self._workers)

    @property
    def dropped(self) -> int:
        return sum(w.dropped for w in self._workers)

    def deliveries(self) -> list[tuple[str, int, int, int]]:
        """(target, sent, failed, dropped) for each target, for metrics."""
        return [(w.name, w.sent, w.failed, w.dropped) for w in self._workers]

    def refreshes(self) -> list[tuple[str, int, int]]:
        """(target, ok, failed) re-sends of open Alertmanager alerts, for metrics."""
        return [(w.name, w.refreshed, w.refresh_failed) for w in self._workers
                if isinstance(w, AlertmanagerWorker)]

    def pending(self) -> int:
        """Alerts queued or being delivered right now, over every target."""
        return sum(w.pending() for w in self._workers)

    def send(self, agent: str, transition: str, details: Mapping[str, Any] | None = None) -> None:
        """Queue an alert for every target that takes it and return at once."""
        kind = self._parse(agent, transition)
        if kind is None:
            return
        alert = Alert(agent, kind, self._clock.now(), dict(details or {}))
        for worker in self._workers:
            if worker.accepts(kind):
                worker.put(alert)

    def restore(
        self, agent: str, transition: str, details: Mapping[str, Any] | None = None
    ) -> None:
        """An incident a restarted healer carries over was alerted before: re-open its
        Alertmanager alert (which would otherwise lapse), without telling anyone again."""
        kind = self._parse(agent, transition)
        if kind is None:
            return
        alert = Alert(agent, kind, self._clock.now(), dict(details or {}))
        for worker in self._workers:
            if isinstance(worker, AlertmanagerWorker):
                worker.put(alert)

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what can be delivered within `timeout` seconds, then abandon the rest."""
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.begin_close()
        late = [w for w in self._workers if not w.join(deadline - time.monotonic())]
        if not late:
            return
        abandoned = sum(worker.abandon() for worker in late)
        # A worker may still sit in one HTTP request (bounded by the request timeout); it is
        # a daemon thread and exits after it, so close() need not wait for it.
        log.warning("alerts_abandoned", dropped=abandoned, targets=[w.name for w in late])

    @staticmethod
    def _parse(agent: str, transition: str) -> Transition | None:
        try:
            return Transition(transition)
        except ValueError:
            log.error(
                "alert_rejected", agent=agent, transition=transition, reason="unknown transition"
            )
            return None


class _QueueWorker(Worker):
    """Discord, the webhook, or the log: one message per alert, oldest dropped when full."""

    def __init__(self, name: str, url: str | None, poster: Poster, queue_size: int) -> None:
        super().__init__(name)
        self._url = url
        self._poster = poster
        self._queue: collections.deque[Alert] = collections.deque()
        self._queue_size = max(1, queue_size)

    def accepts(self, transition: Transition) -> bool:
        return transition in HUMAN_TRANSITIONS

    def _enqueue(self, alert: Alert) -> bool:
        if len(self._queue) >= self._queue_size:
            # The newest news about an incident matters more than the oldest.
            old = self._queue.popleft()
            self.dropped += 1
            log.warning("alert_dropped", agent=old.agent, transition=old.transition.value,
                        target=self.name, reason="queue full")
        self._queue.append(alert)
        return True

    def _backlog(self) -> int:
        return len(self._queue)

    def _discard(self) -> None:
        self._queue.clear()

    def _take(self) -> Alert | None:
        return self._queue.popleft() if self._queue else None

    def _do(self, alert: Alert) -> None:
        fields: dict[str, Any] = {
            "agent": alert.agent, "transition": alert.transition.value, "target": self.name,
        }
        if self._url is None:
            self.sent += 1
            log.info("alert_sent", ok=True, tries=1, details=dict(alert.details), **fields)
            return
        body = _discord_payload(alert) if self.name == "discord" else _webhook_payload(alert)
        result, tries = self._poster.deliver(self._url, body, self._stop)
        if self._stop.is_set() and not result.ok:
            return  # close() gave up; this alert is counted as abandoned there
        fields.update(ok=result.ok, tries=tries)
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


def _webhook_payload(alert: Alert) -> bytes:
    payload = {
        "agent": alert.agent,
        "transition": alert.transition.value,
        "timestamp": iso(alert.timestamp),
        "details": dict(alert.details),
    }
    return json.dumps(payload, default=str).encode()


def _discord_line(alert: Alert) -> str:
    extra = ", ".join(f"{key}={value}" for key, value in alert.details.items())
    line = f"healer: {alert.agent} {alert.transition.value} at {iso(alert.timestamp)}"
    if extra:
        line += f" ({extra})"
    # One line: details may carry newlines (task titles), which would split the message.
    line = " ".join(line.split())
    if len(line) > _DISCORD_MAX_CONTENT:
        line = line[: _DISCORD_MAX_CONTENT - 1] + "…"
    return line


def _discord_payload(alert: Alert) -> bytes:
    # Agent-controlled text (a folder named `Agent-@everyone`) must never ping anyone.
    return json.dumps({"content": _discord_line(alert), "allowed_mentions": {"parse": []}}).encode()

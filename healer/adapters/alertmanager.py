"""Alertmanager as an alert target (`POST /api/v2/alerts`): one alert per incident, its
`alertname` following the incident, kept open by re-sending it before its `endsAt`, and
ended with `endsAt` now. A healer that dies stops re-sending, so its alerts resolve alone."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from healer.adapters.delivery import Alert, Poster, Transition, Worker
from healer.core.isotime import iso
from healer.ports import Clock

__all__ = ["DEFAULT_TTL", "SEVERITY", "AlertBook", "AlertmanagerWorker", "OpenAlert", "Origin"]

log = structlog.get_logger()

# An open alert is sent with endsAt = now + TTL and re-sent every TTL/3, so two re-sends
# may be lost before Alertmanager ends it; a dead healer's alerts end within one TTL.
DEFAULT_TTL = 300.0
_MAX_ANNOTATION = 1000  # a task title or message pasted whole would bloat every re-send

T = Transition
# transition -> (slot, alertname it opens; None: it ends the slot's alert)
_SLOTS: Mapping[Transition, tuple[str, str | None]] = {
    T.STALLED: ("incident", "AgentStalled"),
    T.ESCALATED: ("incident", "AgentEscalated"),
    T.RECOVERED: ("incident", None),
    T.RESOLVED: ("incident", None),
    T.WAITING: ("waiting", "AgentWaiting"),
    T.WAITING_OVER: ("waiting", None),
    T.FLAPPING: ("flapping", "AgentFlapping"),
    T.FLAPPING_OVER: ("flapping", None),
    T.SWARM_OUTAGE: ("swarm", "SwarmOutage"),
    T.SWARM_RECOVERED: ("swarm", None),
}
SEVERITY: Mapping[str, str] = {
    "AgentStalled": "warning",
    "AgentWaiting": "warning",
    "AgentEscalated": "critical",
    "AgentFlapping": "critical",
    "SwarmOutage": "critical",
}
# An incident's alert only ever climbs: a stalled alert after the escalation (the standard
# recovery runs at recover_after even then) must not turn a page back into a warning.
_RANK = {"AgentStalled": 1, "AgentEscalated": 2}

Key = tuple[str, str | None]  # (slot, agent); the swarm's slot has no agent


@dataclass(frozen=True, slots=True)
class Origin:
    """Where alerts come from: the labels that keep one healer's alerts apart from another's."""

    host: str
    swarm: str
    workspaces: Path | None = None


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """One alert Alertmanager is being kept told of."""

    alertname: str
    agent: str | None
    started: float
    silence_start: float | None = None
    facts: Mapping[str, str] = field(default_factory=dict)


class AlertBook:
    """The open alerts and the posts owed to Alertmanager. No I/O and no clock of its own:
    every time is passed in, so a test drives it by hand."""

    def __init__(self, origin: Origin, ttl: float = DEFAULT_TTL) -> None:
        self.origin = origin
        self.ttl = ttl
        self.open: dict[Key, OpenAlert] = {}
        # (alertname, agent) -> (alert, when it ended or None while open); the latest wins
        self._owed: dict[tuple[str, str | None], tuple[OpenAlert, float | None]] = {}
        self._news: list[tuple[str, Transition]] = []

    def owed(self) -> int:
        return len(self._owed)

    def forget_owed(self) -> None:
        self._owed.clear()
        self._news.clear()

    def apply(self, alert: Alert) -> bool:
        """Record a transition; True when Alertmanager is owed a post for it."""
        slot, alertname = _SLOTS[alert.transition]
        agent = None if slot == "swarm" else alert.agent
        key = (slot, agent)
        old = self.open.get(key)
        if alertname is None:
            if old is None:
                return False  # nothing of ours is open there (never alerted, or ended)
            del self.open[key]
            self._owe(old, alert.timestamp)
        else:
            if old is not None and _RANK.get(old.alertname, 0) > _RANK.get(alertname, 0):
                alertname = old.alertname
            new = _opened(alertname, agent, alert, old)
            if old is not None and old.alertname != alertname:
                self._owe(old, alert.timestamp)  # AgentStalled ends as AgentEscalated begins
            self.open[key] = new
            self._owe(new, None)
        self._news.append((alert.agent, alert.transition))
        return True

    def take(self, now: float) -> tuple[list[dict[str, Any]], list[tuple[str, Transition]]]:
        """The owed posts as Alertmanager alerts, and the transitions they carry."""
        payloads = [self.payload(a, now, ended) for a, ended in self._owed.values()]
        news = self._news
        self._owed, self._news = {}, []
        return payloads, news

    def current(self, now: float) -> list[dict[str, Any]]:
        """Every open alert, to re-send before Alertmanager would end it."""
        return [self.payload(a, now, None) for a in self.open.values()]

    def payload(self, alert: OpenAlert, now: float, ended: float | None) -> dict[str, Any]:
        labels = {"alertname": alert.alertname, "agent": alert.agent, "host": self.origin.host,
                  "swarm": self.origin.swarm, "severity": SEVERITY[alert.alertname]}
        silent = None if alert.silence_start is None else max(0.0, now - alert.silence_start)
        notes = dict(alert.facts)
        if silent is not None:
            notes["silent_for"] = _duration(silent)
        if alert.agent is not None and self.origin.workspaces is not None:
            notes["agent_dir"] = str(Path(self.origin.workspaces, alert.agent).absolute())
        notes["summary"] = self._summary(alert, notes)
        return {
            # An empty label is no label to Alertmanager; leave it out rather than send "".
            "labels": {k: v for k, v in labels.items() if v},
            "annotations": notes,
            "startsAt": iso(alert.started),
            "endsAt": iso(ended if ended is not None else now + self.ttl),
        }

    def _owe(self, alert: OpenAlert, ended: float | None) -> None:
        self._owed[(alert.alertname, alert.agent)] = (alert, ended)

    def _summary(self, alert: OpenAlert, notes: Mapping[str, str]) -> str:
        who, on = alert.agent, f"on {self.origin.host}"
        silent = notes.get("silent_for")
        if alert.alertname == "AgentStalled":
            for_ = f" for {silent}" if silent else ""
            return f"{who} {on} has been silent{for_}; healing has not brought it back"
        if alert.alertname == "AgentEscalated":
            tries = notes.get("attempts", "all")
            return f"{who} {on} needs a human: {tries} healing attempts did not bring it back"
        if alert.alertname == "AgentWaiting":
            message = notes.get("message")
            return f"{who} {on} is waiting on a human" + (f": {message}" if message else "")
        if alert.alertname == "AgentFlapping":
            return f"{who} {on} keeps stalling and coming back; healer has stopped healing it"
        agents = notes.get("agents", "many")
        return f"{agents} agents of swarm {self.origin.swarm} {on} are stalled at once"


def _opened(alertname: str, agent: str | None, alert: Alert, old: OpenAlert | None) -> OpenAlert:
    facts, silent_for = _facts(alert.details)
    silence_start = alert.timestamp - silent_for if silent_for is not None else None
    if old is None:
        return OpenAlert(alertname, agent, alert.timestamp, silence_start, facts)
    started = old.started if old.alertname == alertname else alert.timestamp
    return replace(
        old, alertname=alertname, started=started, facts={**old.facts, **facts},
        silence_start=silence_start if silence_start is not None else old.silence_start,
    )


def _facts(details: Mapping[str, Any]) -> tuple[dict[str, str], float | None]:
    """Annotations from an alert's details, and the silence it reports (if any)."""
    facts: dict[str, str] = {}
    silent_for: float | None = None
    for key, value in details.items():
        if key == "silent_for" and isinstance(value, int | float):
            silent_for = float(value)
        elif key == "actions" and isinstance(value, list | tuple):
            facts["tried"] = ", ".join(str(v) for v in value)
        elif isinstance(value, float):
            facts[key] = f"{value:g}"
        elif value is not None:
            facts[key] = str(value)
    return {k: v[:_MAX_ANNOTATION] for k, v in facts.items()}, silent_for


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def api_url(url: str) -> str:
    """The alerts endpoint of an Alertmanager given by its base URL (a route prefix kept)."""
    base = url.rstrip("/")
    return base if base.endswith("/api/v2/alerts") else base + "/api/v2/alerts"


class AlertmanagerWorker(Worker):
    """Posts owed alerts as they come, and re-sends the open ones every TTL/3."""

    def __init__(
        self,
        name: str,
        url: str,
        poster: Poster,
        origin: Origin,
        clock: Clock,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        ttl: float = DEFAULT_TTL,
    ) -> None:
        super().__init__(name)
        self._url = api_url(url)
        self._poster = poster
        self._clock = clock
        # Re-sends are paced on the monotonic clock: a wall-clock step back must not hold
        # them off until Alertmanager has ended every alert.
        self._monotonic = monotonic
        self._book = AlertBook(origin, ttl)
        self._every = ttl / 3
        self._next_refresh: float | None = None
        self.refreshed = 0
        self.refresh_failed = 0

    def _enqueue(self, alert: Alert) -> bool:
        return self._book.apply(alert)

    def open_alerts(self) -> int:
        with self._cond:
            return len(self._book.open)

    def _backlog(self) -> int:
        return self._book.owed()

    def _discard(self) -> None:
        self._book.forget_owed()

    def _idle_timeout(self) -> float | None:
        if self._next_refresh is None:
            return None
        return max(0.0, self._next_refresh - self._monotonic())

    def _take(self) -> tuple[str, list[dict[str, Any]], list[tuple[str, Transition]]] | None:
        now = self._clock.now()
        if self._book.owed():
            payloads, news = self._book.take(now)
            self._schedule(reset=False)
            return "post", payloads, news
        due = self._next_refresh is not None and self._monotonic() >= self._next_refresh
        if self._closing or not due:
            return None
        self._schedule(reset=True)
        payloads = self._book.current(now)
        return ("refresh", payloads, []) if payloads else None

    def _schedule(self, *, reset: bool) -> None:
        if not self._book.open:
            self._next_refresh = None
        elif reset or self._next_refresh is None:
            self._next_refresh = self._monotonic() + self._every

    def _do(self, job: tuple[str, list[dict[str, Any]], list[tuple[str, Transition]]]) -> None:
        kind, payloads, news = job
        body = json.dumps(payloads).encode()
        result, tries = self._poster.deliver(self._url, body, self._stop)
        if self._stop.is_set() and not result.ok:
            return  # close() gave up; counted as abandoned there
        fields: dict[str, Any] = {"ok": result.ok, "tries": tries, "target": self.name}
        if result.status is not None:
            fields["status"] = result.status
        if result.error:
            fields["error"] = result.error
        if kind == "refresh":
            if result.ok:
                self.refreshed += 1
                log.debug("alerts_refreshed", alerts=len(payloads), **fields)
            else:
                self.refresh_failed += 1
                log.warning("alerts_refreshed", alerts=len(payloads), **fields)
            return
        for agent, transition in news:
            if result.ok:
                self.sent += 1
                log.info("alert_sent", agent=agent, transition=transition.value, **fields)
            else:
                self.failed += 1
                log.warning("alert_sent", agent=agent, transition=transition.value, **fields)

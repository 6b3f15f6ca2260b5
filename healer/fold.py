"""The one path of the engine's alerts to the operator. While the swarm is in an outage, the
agents' own alerts are folded into the swarm's; a flapping agent's into its flapping alert
(SPEC §14). Closings always reach Alertmanager, so no alert of an agent is left open there."""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

from healer.core.model import Transition
from healer.ports import AlertSink

__all__ = ["AlertFold", "Held"]

T = Transition
# The alert slots of an agent (as Alertmanager keeps them): what opens one, what closes it.
_OPENS: Mapping[Transition, str] = {
    T.STALLED: "incident", T.ESCALATED: "incident", T.WAITING: "waiting", T.FLAPPING: "flapping",
}
_CLOSES: Mapping[Transition, str] = {
    T.RECOVERED: "incident", T.RESOLVED: "incident", T.WAITING_OVER: "waiting",
    T.FLAPPING_OVER: "flapping",
}
# A closing that tells a human, and its form that only ends an Alertmanager alert: what a
# folded incident gets, since nobody was told of it on its own (SPEC §17, `recovered`).
_SILENT: Mapping[Transition, Transition] = {T.RECOVERED: T.RESOLVED}

Held = Callable[[str, str, dict[str, Any]], dict[str, Any] | None]


class AlertFold:
    """Sends, folds or quietens each alert. `outage` is set by the swarm's judge;
    `is_flapping` is the flapping breaker's question. `folded` counts, by transition, what
    the current outage kept from going out on its own."""

    def __init__(self, sink: AlertSink | None) -> None:
        self._sink = sink
        self.outage = False
        self.is_flapping: Callable[[str], bool] = lambda _agent: False
        self.folded: collections.Counter[str] = collections.Counter()
        # (agent, slot) -> the latest opening an outage folded, while its slot is still open.
        self._held: dict[tuple[str, str], tuple[Transition, dict[str, Any]]] = {}

    def send(self, agent: str, transition: Transition, details: Mapping[str, Any]) -> None:
        if not agent:  # the swarm's own alert
            self._out(agent, transition, details)
            return
        slot = _OPENS.get(transition)
        if slot is not None:
            self._open(agent, slot, transition, details)
            return
        slot = _CLOSES.get(transition)
        held = self._held.pop((agent, slot), None) if slot is not None else None
        quiet = self.outage or held is not None or self._muted(agent, slot)
        if quiet and transition in _SILENT:
            if self.outage:
                self.folded[transition.value] += 1
            transition = _SILENT[transition]
        self._out(agent, transition, details)

    def restore(self, agent: str, transition: Transition, details: Mapping[str, Any]) -> None:
        """An alert open before a restart stays open (Alertmanager only; nobody is told)."""
        if self._sink is not None:
            self._sink.restore(agent, transition, details)

    def held(self) -> int:
        return len(self._held)

    def release(self, still_open: Held) -> int:
        """After an outage: send each folded opening whose slot is still open, with the
        details `still_open` brings up to date (None: it is over); returns how many went."""
        held, self._held = self._held, {}
        sent = 0
        for (agent, slot), (transition, details) in sorted(held.items()):
            fresh = still_open(agent, slot, details)
            if fresh is not None:
                self.send(agent, transition, fresh)
                sent += 1
        return sent

    def _open(self, agent: str, slot: str, transition: Transition,
              details: Mapping[str, Any]) -> None:
        if self._muted(agent, slot):
            return  # the flapping alert stands for it
        if self.outage:
            self._held[(agent, slot)] = (transition, dict(details))
            self.folded[transition.value] += 1
            return
        self._held.pop((agent, slot), None)
        self._out(agent, transition, details)

    def _muted(self, agent: str, slot: str | None) -> bool:
        return slot != "flapping" and self.is_flapping(agent)

    def _out(self, agent: str, transition: Transition, details: Mapping[str, Any]) -> None:
        # The place where every alert of the engine leaves it: `on:` commands belong here.
        if self._sink is not None:
            self._sink.send(agent, transition, dict(details))

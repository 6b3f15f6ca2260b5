"""Prometheus metrics (prometheus-client is a dependency: a plain install serves them): a
collector that takes the daemon's readings at scrape time, so ingesting an event costs
nothing extra but one histogram sample."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import structlog

from healer.config import parse_addr
from healer.core.model import Stage
from healer.errors import ConfigError
from healer.ports import Change, Readings

__all__ = ["Metrics", "serve_metrics"]

Source = Callable[[], Readings]

log = structlog.get_logger()

LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """Owns a private registry and the HTTP server thread."""

    def __init__(self, registry: Any, server: Any, thread: Any) -> None:
        from prometheus_client import Histogram

        self.registry = registry
        self._server = server
        self._thread = thread
        self.lag = Histogram(
            "healer_event_lag_seconds",
            "Time from an event's arrival at the observer to the activity table.",
            buckets=LAG_BUCKETS, registry=registry,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def observe_changes(self, changes: Sequence[Change], now: float) -> None:
        # One sample per batch, at its oldest change: the worst lag of the batch.
        self.lag.observe(max(0.0, now - changes[0].when))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Collector:
    def __init__(self, source: Source) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        r = self._source()
        stages = dict.fromkeys((s.value for s in Stage), 0)
        for _agent, _last, agent_stage in r.agents:
            stages[agent_stage.value] += 1
        by_stage = GaugeMetricFamily("healer_agents", "Agents by stage.", labels=["stage"])
        for stage, count in stages.items():
            by_stage.add_metric([stage], count)
        yield by_stage
        silence = GaugeMetricFamily(
            "healer_agent_silence_seconds", "Seconds since the agent's last genuine activity.",
            labels=["agent"],
        )
        for agent, last, _stage in r.agents:
            silence.add_metric([agent], max(0.0, r.now - last))
        yield silence
        counters = r.counters
        actions = CounterMetricFamily(
            "healer_actions", "Actions carried out, by pipeline.", labels=["pipeline"]
        )
        actions.add_metric(["healing"], counters.heal_actions)
        actions.add_metric(["recovery"], counters.recovery_actions)
        yield actions
        yield CounterMetricFamily("healer_escalations", "Incidents escalated to a human.",
                                  value=counters.escalations)
        yield CounterMetricFamily("healer_recoveries", "Incidents closed by the agent's return.",
                                  value=counters.recoveries)
        yield CounterMetricFamily("healer_events_ingested", "Filesystem events received.",
                                  value=r.events_seen)
        yield CounterMetricFamily("healer_reconcile_sweeps", "Reconcile sweeps of the root.",
                                  value=r.sweeps)
        yield CounterMetricFamily("healer_observer_restarts", "Restarts of a dead observer.",
                                  value=r.observer_restarts)
        alerts = CounterMetricFamily("healer_alerts", "Alert deliveries.", labels=["outcome"])
        alerts.add_metric(["sent"], r.alerts_sent)
        alerts.add_metric(["failed"], r.alerts_failed)
        alerts.add_metric(["dropped"], r.alerts_dropped)
        yield alerts
        yield from _incident_families(r)
        yield from _alert_families(r)


def _incident_families(r: Readings) -> Iterator[Any]:
    """Incidents, their timings, action results and the health of healer's own inputs."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        SummaryMetricFamily,
    )

    counters = r.counters
    yield CounterMetricFamily("healer_incidents_opened", "Incidents opened (stalls detected).",
                              value=counters.incidents_opened)
    yield SummaryMetricFamily(
        "healer_detection_seconds", "Silence at detection, per incident opened (MTTD: sum/count).",
        count_value=counters.incidents_opened, sum_value=counters.detection_seconds,
    )
    yield SummaryMetricFamily(
        "healer_recovery_seconds", "Detection to the agent's return, per recovered incident "
        "(MTTR: sum/count).",
        count_value=counters.recoveries, sum_value=counters.recovery_seconds,
    )
    results = CounterMetricFamily(
        "healer_action_results", "Actions by pipeline, action and whether they applied.",
        labels=["pipeline", "action", "result"],
    )
    for (pipeline, action, ok), count in sorted(counters.results.items()):
        results.add_metric([pipeline, action, "ok" if ok else "error"], count)
    yield results
    yield CounterMetricFamily("healer_event_queue_overflows",
                              "Kernel event-queue overflows (each answered by a rescan).",
                              value=r.overflows)
    yield GaugeMetricFamily("healer_observer_up", "1 while the filesystem observer runs.",
                            value=1 if r.observer_up else 0)
    yield GaugeMetricFamily("healer_history_paused",
                            "1 while the durable history is paused after a failure.",
                            value=1 if r.history_paused else 0)
    yield CounterMetricFamily("healer_history_failures",
                              "History calls that failed (each pauses the history).",
                              value=r.history_failures)


def _alert_families(r: Readings) -> Iterator[Any]:
    """Alert deliveries per target, and the Alertmanager re-sends."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    by_target = CounterMetricFamily(
        "healer_alert_deliveries", "Alert deliveries, by target and outcome.",
        labels=["target", "outcome"],
    )
    for target, sent, failed, dropped in r.deliveries:
        by_target.add_metric([target, "sent"], sent)
        by_target.add_metric([target, "failed"], failed)
        by_target.add_metric([target, "dropped"], dropped)
    yield by_target
    refreshes = CounterMetricFamily(
        "healer_alertmanager_refreshes", "Re-sends of the open alerts to Alertmanager.",
        labels=["target", "outcome"],
    )
    for target, ok, failed in r.refreshes:
        refreshes.add_metric([target, "ok"], ok)
        refreshes.add_metric([target, "failed"], failed)
    yield refreshes
    yield GaugeMetricFamily("healer_alerts_pending", "Alerts queued or being delivered.",
                            value=r.alerts_pending)


def serve_metrics(addr: str, source: Source) -> Metrics:
    """Serve /metrics on `addr` (HOST:PORT; an empty host means loopback, not all interfaces),
    asking `source` for the readings at each scrape."""
    from prometheus_client import CollectorRegistry, start_http_server

    host, port = parse_addr(addr)
    registry = CollectorRegistry()
    registry.register(_Collector(source))
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"healer.metrics_addr: cannot listen on {addr}: {exc}") from None
    metrics = Metrics(registry, server, thread)
    # With port 0 the kernel picks the port: the log is the only place it can be learnt.
    bound = f"[{host}]:{metrics.port}" if ":" in host else f"{host}:{metrics.port}"
    log.info("metrics_started", addr=bound, host=host, port=metrics.port)
    return metrics

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

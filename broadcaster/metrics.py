"""Count what operators watch, in a registry per application (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The service's Prometheus metrics; exposed at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.entries = Counter("broadcaster_entries", "Entries appended", ["kind"], registry=r)
        self.connections = Gauge(
            "broadcaster_connections", "Open live connections", ["transport"], registry=r
        )
        self.fanout_latency = Histogram(
            "broadcaster_fanout_latency_seconds",
            "Time from commit to hand-off to each live connection",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.slow_clients = Counter(
            "broadcaster_slow_clients_closed",
            "Live connections closed for falling behind",
            registry=r,
        )
        self.deliveries = Counter(
            "broadcaster_deliveries", "Delivery attempts", ["channel", "outcome"], registry=r
        )
        self.queue_depth = Gauge(
            "broadcaster_delivery_queue_depth", "Deliveries waiting", ["channel"], registry=r
        )
        self.overdue = Gauge(
            "broadcaster_incidents_overdue",
            "Active incidents past their promised update",
            registry=r,
        )

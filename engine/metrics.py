"""GET /metrics: Prometheus text built from the counters in Redis (stats.py) and the live
figures of the health report, so every API replica tells the same story."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily

from engine.stats import BUCKETS


class Snapshot:
    """A prometheus_client collector over one reading of the stats and the health report."""

    def __init__(self, stats: dict[str, Any], report: dict[str, Any]) -> None:
        self.stats, self.report = stats, report

    def collect(self) -> Iterator[Any]:
        yield from self._counters()
        yield from self._gauges()
        for name, help_text, key in (
            ("hookrules_decision_latency_seconds", "From a webhook's arrival to its decision.", "decided"),
            ("hookrules_action_latency_seconds", "From an action's first try to done.", "action_done"),
        ):
            data = self.stats["latency"].get(key, {})
            buckets = [(str(le), data.get(str(le), 0.0)) for le in BUCKETS] + [("+Inf", data.get("+Inf", 0.0))]
            yield HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=data.get("sum", 0.0))

    def _counters(self) -> Iterator[Any]:
        webhooks = CounterMetricFamily("hookrules_webhooks", "Webhooks answered, by source and answer (status code or duplicate).",
                                       labels=["source", "outcome"])
        for source, outcomes in self.stats["intake"].items():
            for outcome, count in outcomes.items():
                webhooks.add_metric([source, outcome], count)
        yield webhooks
        rules = {name: CounterMetricFamily(f"hookrules_rule_{name}", f"Rule {name}, by rule.", labels=["rule"])
                 for name in ("candidates", "matched", "errors")}
        for rule, counts in self.stats["rules"].items():
            for name, family in rules.items():
                family.add_metric([rule], counts[name])
        yield from rules.values()
        actions = CounterMetricFamily("hookrules_actions", "Action attempts' outcomes (done, failed, retrying), by connector.",
                                      labels=["connector", "outcome"])
        for connector, outcomes in self.stats["actions"].items():
            for outcome, count in outcomes.items():
                actions.add_metric([connector, outcome], count)
        yield actions
        refreshes = CounterMetricFamily("hookrules_oauth_refreshes", "OAuth access tokens obtained, by connector.", labels=["connector"])
        for name, connector in (self.report.get("connectors") or {}).items():
            if connector.get("oauth"):
                refreshes.add_metric([name], connector["oauth"].get("refreshes", 0))
        yield refreshes

    def _gauges(self) -> Iterator[Any]:
        report, queue = self.report, self.report.get("queue") or {}
        for name, help_text, value in (
            ("hookrules_up", "1 when /ready would answer 200.", 1.0 if report["status"] == "ok" else 0.0),
            ("hookrules_queue_depth", "Jobs in the queue.", queue.get("depth")),
            ("hookrules_queue_oldest_wait_seconds", "How long the oldest due job has waited.", queue.get("oldest_wait_s") or 0.0),
            ("hookrules_dead_letters", "Actions given up on, not yet replayed or purged.", report.get("dead_letters")),
            ("hookrules_ruleset_load_errors", "Problems of a refused rule edit (0: the files in use).", len(report["ruleset"]["errors"])),
            ("hookrules_worker_heartbeat_age_seconds", "Seconds since a worker last reported.", (report.get("worker") or {}).get("heartbeat_age_s")),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=float(value))
        info = InfoMetricFamily("hookrules_ruleset", "The ruleset in use.")
        info.add_metric([], {"version": report["ruleset"]["version"], "rules": str(report["ruleset"]["rules"])})
        yield info


def exposition(stats: dict[str, Any], report: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(stats, report))
    return generate_latest(registry)

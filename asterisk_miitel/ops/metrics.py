"""Prometheus metrics, built with prometheus_client.

Nothing is counted twice and the hot path pays nothing: the service already
keeps counters in its stats objects (tracker, listener, sender), and a
custom Collector reads them when Prometheus scrapes. Only what those
objects do not keep is recorded as it happens, through the sender's
`observer` callback (one call per finished call, not per event): calls by
event_type and outcome, hangup-to-upload latency and upload size
histograms.

Each ServiceMetrics has its own CollectorRegistry (never the global one), so
several services (tests) can live in one process.

    metrics = ServiceMetrics(service)
    Sender(..., observer=metrics.observe)
    body = await metrics.scrape()   # the /metrics page
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config import EventTypeName
from .policy import rule_of
from .view import OutboxSnapshot, ServiceView, snapshot_outbox

log = logging.getLogger(__name__)

PREFIX = "asterisk_miitel"
# Hangup -> MiiTel has the audio: seconds when all is well, up to the
# 3-hour upload window when MiiTel was down.
LATENCY_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 10800)
# 8 kHz 16-bit stereo WAV is about 1.9 MB a minute.
SIZE_BUCKETS = (64e3, 256e3, 1e6, 4e6, 16e6, 64e6, 256e6, 1e9)
# A call's outcome, from the sender's observer (`retry` is not an outcome).
OUTCOMES = {"uploaded", "sent", "set_aside"}
EVENT_TYPES: tuple[str, ...] = get_args(EventTypeName)


class ServiceMetrics:
    """The metrics of one running service."""

    def __init__(
        self,
        service: ServiceView,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            f"{PREFIX}_calls", "Calls by MiiTel event_type and final outcome "
            "(uploaded, sent without audio, set_aside, skipped)",
            ["event_type", "outcome"], registry=self.registry,
        )
        # Every (event_type, outcome) series exists from the start at 0:
        # Prometheus' increase() misses a series that first appears at 1.
        for event_type in (*EVENT_TYPES, "unknown"):
            for outcome in (*sorted(OUTCOMES), "skipped"):
                self.calls.labels(event_type, outcome)
        self.skipped = Counter(
            f"{PREFIX}_calls_skipped", "Calls not sent because of a [send] rule, by rule",
            ["rule"], registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_hangup_to_upload_seconds",
            "Seconds from the recording's end (hangup) to MiiTel accepting its audio",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.upload_size = Histogram(
            f"{PREFIX}_upload_size_bytes", "Size of each uploaded recording",
            buckets=SIZE_BUCKETS, registry=self.registry,
        )
        self.collector = StatsCollector(service, monotonic=monotonic)
        self.registry.register(self.collector)
        self._service = service
        self._observer_failed = False

    def observe(self, what: str, row: Any, info: Mapping[str, Any]) -> None:
        """The Sender's observer: (what, row, info), what in uploaded/sent/set_aside/retry.

        Runs inline in the sender: it must never raise into it.
        """
        try:
            if what not in OUTCOMES:
                return
            self.calls.labels(_event_type(getattr(row, "call_data", None)), what).inc()
            if what == "uploaded":
                latency = info.get("latency")
                if latency is not None:
                    self.latency.observe(max(0.0, float(latency)))
                size = info.get("bytes")
                if size:
                    self.upload_size.observe(float(size))
        except Exception:  # a metrics bug must not cost a call
            if not self._observer_failed:
                self._observer_failed = True
                log.exception("metrics observer failed (further failures not logged)")

    def count_skipped(self, call_data: Mapping[str, Any] | None, reason: str) -> None:
        """A call the [send] rules kept out (policy.decide's reason), at intake."""
        self.calls.labels(_event_type(call_data), "skipped").inc()
        self.skipped.labels(rule_of(reason)).inc()

    def count_set_aside(self, call_data: Mapping[str, Any] | None) -> None:
        """A call set aside at intake (it never reaches the sender's observer)."""
        self.calls.labels(_event_type(call_data), "set_aside").inc()

    async def refresh(self) -> OutboxSnapshot:
        """Read the outbox (async) so that the next collect() can report it."""
        snap = await snapshot_outbox(self._service.outbox)
        self.collector.outbox = snap
        return snap

    async def scrape(self) -> bytes:
        """The Prometheus text exposition, fresh."""
        await self.refresh()
        return generate_latest(self.registry)


class StatsCollector(Collector):
    """Reads the service's own counters at scrape time."""

    def __init__(self, service: ServiceView, *, monotonic: Callable[[], float]) -> None:
        self.service = service
        self.monotonic = monotonic
        self.outbox: OutboxSnapshot | None = None  # set by ServiceMetrics.refresh()

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can check for clashes without reading stats.
        return [_family(m, h) for m, h in _NAMES]

    def collect(self) -> Iterable[Metric]:
        yield from self._ami()
        yield from self._tracker()
        yield from self._sender()
        yield from self._outbox()

    def _ami(self) -> Iterable[Metric]:
        listener = self.service.listener
        if listener is None:
            return
        s = listener.stats
        yield GaugeMetricFamily(f"{PREFIX}_ami_connected", _HELP["ami_connected"],
                                value=1 if s.connected else 0)
        yield from _counters((("ami_connects", s.connects), ("ami_reconnects", s.reconnects),
                              ("ami_dead_links", s.dead_links),
                              ("ami_login_failures", s.login_failures)))
        yield _labelled(CounterMetricFamily, "ami_dropped", "reason", s.dropped)
        if s.last_event_at is not None:
            yield GaugeMetricFamily(f"{PREFIX}_ami_last_event_age_seconds",
                                    _HELP["ami_last_event_age_seconds"],
                                    value=max(0.0, self.monotonic() - s.last_event_at))

    def _tracker(self) -> Iterable[Metric]:
        s = self.service.tracker.stats
        yield _labelled(CounterMetricFamily, "ami_events", "event", s.by_event)
        yield from _counters((("ami_events_ignored", s.ignored),
                              ("ami_events_malformed", s.bad_events),
                              ("recordings_opened", s.recordings_opened),
                              ("recordings_closed", s.recordings_closed)))

    def _sender(self) -> Iterable[Metric]:
        sender = self.service.sender
        if sender is None:
            return
        s = sender.stats
        yield from _counters((("posts", s.posted), ("uploads", s.uploaded),
                              ("retries", s.retries), ("uploaded_bytes", s.upload_bytes)))
        yield _labelled(CounterMetricFamily, "sender_outcomes", "outcome", s.by_outcome)

    def _outbox(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(f"{PREFIX}_outbox_accepting", _HELP["outbox_accepting"],
                                value=1 if self.service.accepting else 0)
        snap = self.outbox
        if snap is None or snap.error is not None:
            return
        yield _labelled(GaugeMetricFamily, "outbox_calls", "state", snap.counts)
        yield GaugeMetricFamily(f"{PREFIX}_outbox_depth", _HELP["outbox_depth"],
                                value=snap.depth)
        if snap.oldest_waiting_at is not None:
            age = max(0.0, self.service.clock() - snap.oldest_waiting_at)
            yield GaugeMetricFamily(f"{PREFIX}_outbox_oldest_waiting_seconds",
                                    _HELP["outbox_oldest_waiting_seconds"], value=age)


def _counters(values: Iterable[tuple[str, float]]) -> Iterator[Metric]:
    """One counter per (name, value), named and described from _HELP."""
    for name, value in values:
        yield CounterMetricFamily(f"{PREFIX}_{name}", _HELP[name], value=value)


def _labelled(
    family: type[CounterMetricFamily | GaugeMetricFamily], name: str, label: str,
    counts: Mapping[str, float],
) -> Metric:
    """One metric with a sample per key of `counts` (sorted), the key as `label`."""
    metric = family(f"{PREFIX}_{name}", _HELP[name], labels=[label])
    for key, count in sorted(counts.items()):
        metric.add_metric([key], count)
    return metric


def _event_type(call_data: Mapping[str, Any] | None) -> str:
    value = (call_data or {}).get("event_type")
    return str(value) if value else "unknown"


_HELP = {
    "ami_connected": "1 while the AMI session is logged in",
    "ami_connects": "TCP connections made to AMI",
    "ami_reconnects": "AMI reconnect attempts after a lost or failed session",
    "ami_dead_links": "AMI links dropped because a Ping went unanswered",
    "ami_login_failures": "AMI logins refused (username, secret, permit/deny)",
    "ami_dropped": "AMI input dropped or repaired, by reason: oversized (message dropped), "
                   "malformed (no Event/Response, dropped), bad_header (lines without ': ' "
                   "dropped), invalid_utf8 (bytes replaced, message kept)",
    "ami_last_event_age_seconds": "Seconds since the last AMI event",
    "ami_events": "AMI events the call tracker handled, by event name",
    "ami_events_ignored": "AMI events the tracker does not use (an event filter saves them)",
    "ami_events_malformed": "AMI events ignored because they were malformed",
    "recordings_opened": "Recordings (MixMonitor files) seen starting",
    "recordings_closed": "Recordings seen finishing",
    "posts": "Call histories created in MiiTel (POST answered)",
    "uploads": "Calls finished: audio uploaded, or a missed call sent without audio",
    "retries": "Retries scheduled after a temporary failure",
    "uploaded_bytes": "Bytes of audio uploaded to MiiTel",
    "sender_outcomes": "Sender outcomes (uploaded, sent, set_aside:<code>)",
    "outbox_accepting": "1 while the outbox can be written (new calls are taken)",
    "outbox_calls": "Calls in the outbox by state",
    "outbox_depth": "Calls not yet final (waiting, ready, posting, created)",
    "outbox_oldest_waiting_seconds": "Age of the oldest call not yet final",
}
_COUNTERS = {"ami_connects", "ami_reconnects", "ami_dead_links", "ami_login_failures",
             "ami_dropped",
             "ami_events", "ami_events_ignored", "ami_events_malformed", "recordings_opened",
             "recordings_closed", "posts", "uploads", "retries", "uploaded_bytes",
             "sender_outcomes"}
_NAMES = [(name, name in _COUNTERS) for name in _HELP]


def _family(name: str, counter: bool) -> Metric:
    cls = CounterMetricFamily if counter else GaugeMetricFamily
    return cls(f"{PREFIX}_{name}", _HELP[name])

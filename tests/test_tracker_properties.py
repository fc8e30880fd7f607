"""Property tests: whatever order, loss, duplication or garbage the event
stream has, the tracker never crashes, every payload fits MiiTel's schema,
and no state is left behind for channels that hung up."""

from __future__ import annotations

import json
import random
from importlib import resources

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.ami.synth import call_events, interleave, renumber
from asterisk_miitel.calls.classify import Context, classify
from asterisk_miitel.calls.state import Recording
from asterisk_miitel.calls.tracker import CallTracker

from .support import FIXTURES, lab_config

SCHEMA = json.loads(
    resources.files("asterisk_miitel.miitel").joinpath("incoming_webhook.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft6Validator(SCHEMA, format_checker=jsonschema.Draft6Validator.FORMAT_CHECKER)
BASE = [
    call_events((FIXTURES / "shared" / name).read_bytes())
    for name in ("inbound.log", "outbound.log", "ext2ext.log")
]
CONFIG = lab_config()
CTX = Context(CONFIG, "prop")
GARBAGE = [
    b"Event: Hangup\r\n\r\n",  # no Uniqueid
    b"Event: BridgeEnter\r\nUniqueid: 42.42\r\n\r\n",  # a channel never seen, no name
    b"Event: MixMonitorStart\r\nUniqueid: 9.9\r\nChannel: PJSIP/x-00000001\r\n\r\n",
    b"Event: UnknownThing\r\nFoo: bar\r\n\r\n",
    b"not an ami line at all\r\n\r\n",
    b"Event: DialBegin\r\nDestUniqueid: 1.1\r\n\r\n",
    b"Event: VarSet\r\nUniqueid: 7.7\r\nChannel: Local/1@x-00000001;1\r\nVariable: MIXMONITOR_FILENAME\r\n\r\n",
    b"Event: UserEvent\r\nUserEvent: MiiTelTag\r\nUniqueid: 5.5\r\nChannel: PJSIP/q-00000002\r\nTag: \xff\xfe\r\n\r\n",
    b"Event: Newstate\r\nUniqueid: 1000000004.4\r\nChannel: PJSIP/trunk-00000004\r\nTimestamp: notanumber\r\n\r\n",
]


def run_stream(stream: list[bytes], chunk: int) -> tuple[CallTracker, list[Recording], set[str]]:
    closed: list[Recording] = []
    tracker = CallTracker(closed.append)
    parser = AmiParser()
    data = b"".join(stream)
    hung_up: set[str] = set()
    for i in range(0, len(data), chunk):
        for event in parser.feed(data[i : i + chunk]):
            tracker.feed(event, 1795468000.0 + i / 1000)
            if event.get("Event") == "Hangup" and event.get("Uniqueid"):
                hung_up.add(event["Uniqueid"])
    return tracker, closed, hung_up


def check(tracker: CallTracker, closed: list[Recording], hung_up: set[str]) -> None:
    for uid in hung_up:
        assert uid not in tracker.channels, f"state left for hung-up channel {uid}"
    for rec in tracker.recordings.values():
        assert rec.channel.uniqueid not in hung_up, f"recording {rec.file} open after hangup"
    for bridge, members in tracker.bridges.items():
        assert members, f"empty bridge {bridge} kept"
    for rec in closed:
        outcome = classify(rec, CTX)
        if outcome.call_data is not None:
            errors = list(VALIDATOR.iter_errors({"call_data": [outcome.call_data.payload()]}))
            assert not errors, errors[0].message


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    copies=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
    chunk=st.integers(1, 5000),
    concurrency=st.integers(1, 30),
)
def test_concurrent_calls_in_any_interleaving(
    copies: int, seed: int, chunk: int, concurrency: int
) -> None:
    rng = random.Random(seed)
    calls = [renumber(BASE[rng.randrange(3)], c) for c in range(copies)]
    stream = list(interleave(calls, seed, concurrency))
    tracker, closed, hung_up = run_stream(stream, chunk)
    check(tracker, closed, hung_up)
    # Whole calls, whole streams: everything closed, nothing left.
    assert not tracker.channels and not tracker.recordings and not tracker.bridges
    assert len(closed) == sum(1 for c in calls for e in c if e.startswith(b"Event: MixMonitorStart"))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    copies=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    drop=st.floats(0, 0.3),
    dup=st.floats(0, 0.3),
    junk=st.floats(0, 0.2),
    truncate=st.booleans(),
)
def test_lost_duplicated_and_garbage_events(
    copies: int, seed: int, drop: float, dup: float, junk: float, truncate: bool
) -> None:
    rng = random.Random(seed)
    calls = []
    for c in range(copies):
        events = renumber(BASE[rng.randrange(3)], c)
        if truncate:
            events = events[: rng.randrange(1, len(events) + 1)]
        calls.append(events)
    stream = []
    for event in interleave(calls, seed, 8):
        if rng.random() < drop:
            continue
        stream.append(event)
        if rng.random() < dup:
            stream.append(event)
        if rng.random() < junk:
            stream.append(rng.choice(GARBAGE))
        if rng.random() < junk / 4:
            stream.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
    tracker, closed, hung_up = run_stream(stream, rng.randrange(1, 3000))
    check(tracker, closed, hung_up)

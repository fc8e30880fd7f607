"""3. Memory: bytes kept per call in progress, and RSS after many finished calls.

Both run in a child process (`python -m benchmarks.memory`), so nothing the
other benchmarks allocated is in the numbers.

- Per active call: renumbered copies of a captured call, cut just before its
  first Hangup (channels up, bridged, the recording open), are fed as bytes
  through AmiParser and CallTracker under tracemalloc. What stays allocated
  once the parser and the event dicts are gone is what the tracker keeps
  (Channel and Recording objects, their strings, the tables). Measured at two
  sizes and reported as the slope, so fixed costs do not count: bytes per
  additional call in progress.
- RSS: the full path (parse, track, classify, call_data.payload()) over a mix
  of all 20 captures, 100 calls in progress at a time, in batches of 1,000;
  resident memory (/proc/self/statm) after 1,000 finished calls and after
  100,000 (smoke: 2,000). A leak of even 50 bytes per call would show as 5 MB.
  Nothing calls gc.collect() while it runs (the tracker does not either):
  finished calls must be freed by reference counting. Afterwards the report
  says how many full collections CPython ran by itself and how many
  unreachable objects one final collection finds (cyclic garbage that was
  waiting).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from collections.abc import Sequence
from typing import Any

from asterisk_miitel.ami.parser import AmiParser
from asterisk_miitel.calls.tracker import CallTracker

from . import streams
from .common import MB, Section, rss_now, run_python

PER_CALL_TARGET = 8 * 1024
GROWTH_TARGET = 5 * MB


def _retained(tpls: Sequence[streams.CallTemplate], calls: int) -> tuple[int, int, int]:
    """(bytes traced, open recordings, channels) with `calls` calls in progress."""
    chunks = list(streams.chunked(streams.interleave(
        streams.copies(tpls, calls, cut=streams.until_first_hangup), concurrency=calls)))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracker = CallTracker(lambda rec: None)
    parser = AmiParser()
    n = 0
    for chunk in chunks:
        for msg in parser.feed(chunk):
            tracker.feed(msg, n * 0.001)
            n += 1
    del parser, chunk, msg  # the events are gone: only what the tracker keeps remains
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, tracker.open_recordings, len(tracker.channels)


def per_call(names: Sequence[str] | None, small: int, large: int) -> dict[str, float]:
    tpls = streams.templates(streams.FILTERED, names)
    b1, r1, c1 = _retained(tpls, small)
    b2, r2, c2 = _retained(tpls, large)
    return {"bytes_small": b1, "bytes_large": b2, "calls_small": small, "calls_large": large,
            "recordings_large": r2, "channels_large": c2,
            "per_call": (b2 - b1) / (large - small),
            "per_recording": (b2 - b1) / max(1, r2 - r1),
            "per_channel": (b2 - b1) / max(1, c2 - c1)}


def rss_curve(checkpoints: Sequence[int], batch: int = 1000,
              concurrency: int = 100) -> dict[str, object]:
    tpls = streams.templates()
    full = streams.FullPath()
    tracker = full.tracker
    parser = AmiParser()
    rss: dict[int, int] = {}
    done = 0
    n = 0
    while done < max(checkpoints):
        blocks = streams.interleave(streams.copies(tpls, batch, first=done), seed=done,
                                    concurrency=concurrency)
        for chunk in streams.chunked(blocks):
            for msg in parser.feed(chunk):
                tracker.feed(msg, n * 0.001)
                n += 1
        done += batch
        if done in checkpoints:
            rss[done] = rss_now()
    full_runs = gc.get_stats()[2]["collections"]  # by CPython itself, during the run
    tracked = len(gc.get_objects())
    waiting = gc.collect()  # after the measurement: what refcounting did not free
    return {
        "gc": {"full collections": full_runs, "objects tracked": tracked,
               "cyclic garbage at the end": waiting},
        "rss": {str(k): v for k, v in rss.items()}, "events": n, "call_data": full.call_data,
        "left": {"channels": len(tracker.channels), "bridges": len(tracker.bridges),
                 "recordings": tracker.open_recordings, "locals": len(tracker._locals),
                 "dead": len(tracker._dead)},
    }


def child(what: str, smoke: bool) -> dict[str, object]:
    if what == "per-call":
        small, large = (100, 400) if smoke else (1000, 10_000)
        return {"simple": per_call(["ext2ext"], small, large), "mix": per_call(None, small, large)}
    last = 2000 if smoke else 100_000
    return rss_curve(sorted({1000, *(max(1, last * f // 10_000) * 1000 for f in (1, 2, 5, 10)),
                             last}))


def _child(what: str, smoke: bool) -> dict[str, Any]:
    """`python -m benchmarks.memory WHAT`: a fresh process each, for a clean heap."""
    proc = run_python(["-m", "benchmarks.memory", what, *(["--smoke"] if smoke else [])],
                      timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"memory {what} failed: {proc.stderr.strip()[-400:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(smoke: bool) -> Section:
    section = Section()
    data = _child("per-call", smoke)
    simple, mix = data["simple"], data["mix"]
    curve = _child("rss", smoke)
    per = simple["per_call"]
    section.add("3a", "bytes kept per call in progress, simple call (ext2ext: 2 channels, "
                "bridged, recording)", f"{per:,.0f} B", f"<= {PER_CALL_TARGET:,} B",
                per <= PER_CALL_TARGET,
                f"tracemalloc slope {simple['calls_small']:,} -> {simple['calls_large']:,} calls")
    section.add("3b", "bytes kept per call in progress, mix of all 20 captures",
                f"{mix['per_call']:,.0f} B", "", None,
                f"{mix['per_recording']:,.0f} B per open recording, "
                f"{mix['per_channel']:,.0f} B per live channel")
    rss = {int(k): v for k, v in curve["rss"].items()}
    first, last = min(rss), max(rss)
    growth = rss[last] - rss[first]
    section.add("3c", f"RSS growth, {first:,} -> {last:,} finished calls (full path)",
                f"{growth / MB:+.1f} MB", "<= 5 MB", growth <= GROWTH_TARGET,
                f"RSS {rss[first] / MB:.1f} MB -> {rss[last] / MB:.1f} MB")
    section.details.append(
        "memory: RSS by finished calls: "
        + ", ".join(f"{k:,}: {v / MB:.1f} MB" for k, v in sorted(rss.items()))
        + f"; {curve['events']:,} events, {curve['call_data']:,} call_data; tracker left with "
        + ", ".join(f"{k} {v}" for k, v in curve["left"].items())
        + "; gc: " + ", ".join(f"{k} {v:,}" for k, v in curve["gc"].items()))
    return section


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("what", choices=["per-call", "rss"])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(child(args.what, args.smoke)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

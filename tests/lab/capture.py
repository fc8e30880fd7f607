"""Record real AMI transcripts and recordings into tests/fixtures/captures/<scenario>/.

Each capture holds one scenario: the raw bytes the admin AMI session received
(``ami.log``: no filter, timestampevents on, from the banner on, CRLF intact),
the same moment as seen by the filtered ``miitel`` user (``ami_miitel.log``),
the recordings the call produced, and ``scenario.json`` with the ground truth
(who was which sipp instance, who talked, who answered, times) and what the
lab measured (stereo sides, file length against bridged time, how long after
the hangup Asterisk closed each file, the filter check).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from . import analysis
from .ami import AmiClient, read_transcript
from .audio import analyse
from .inotify import CloseWatcher
from .lab import Lab
from .rootfs import log
from .scenarios import SCENARIOS, Runner, Truth, iso

CAPTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "captures"

__all__ = ["CAPTURE_DIR", "SCENARIOS", "Capture", "run_captures"]


class Capture(Runner):
    """Captures one scenario on a running lab (the scenario drives it as a Runner)."""

    def __init__(self, lab: Lab, name: str, outdir: Path) -> None:
        super().__init__(lab)
        self.name = name
        self.outdir = outdir

    def __enter__(self) -> Capture:
        lab = self.lab
        lab.wait_idle()
        if self.outdir.exists():
            shutil.rmtree(self.outdir)
        self.outdir.mkdir(parents=True)
        shutil.rmtree(lab.voicemail_dir / "default", ignore_errors=True)
        for box in ("1001", "1002", "1003"):
            (lab.voicemail_dir / "default" / box / "INBOX").mkdir(parents=True, exist_ok=True)
        self.before = {p for p in lab.recordings_dir.rglob("*") if p.is_file()}
        self.watcher = CloseWatcher(lab.recordings_dir, lab.voicemail_dir)
        self._admin_log = open(self.outdir / "ami.log", "wb")
        self._miitel_log = open(self.outdir / "ami_miitel.log", "wb")
        self.miitel = lab.connect("miitel", sink=self._miitel_log)
        self.admin = AmiClient(lab.ami_host, lab.ami_port, lab.admin_username,
                               lab.admin_secret, sink=self._admin_log).connect()
        time.sleep(0.3)  # let the login's own events pass
        self.t_start = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        """On an error: stop what runs, keep what was captured so far for a look."""
        self.kill_all()
        for closer in (self.admin.close, self.miitel.close, self._admin_log.close,
                       self._miitel_log.close, self.watcher.close):
            try:
                closer()
            except Exception:  # cleanup must go on
                pass

    def finish(self, truth: Truth) -> dict[str, Any]:
        self.wait_all()
        self.lab.wait_idle(timeout=30)
        last = analysis.last_hangup(self.admin.events) or time.time()
        # the recording is closed a moment after the last hangup: wait ~2 s
        time.sleep(max(0.0, last + 2.0 - time.time()))
        self.t_end = time.time()
        self.admin.close()
        self.miitel.close()
        self._admin_log.close()
        self._miitel_log.close()
        self.watcher.close()
        self.watcher.close = lambda: None  # type: ignore[method-assign]
        return self._write(truth)

    def _write(self, truth: Truth) -> dict[str, Any]:
        admin_msgs = read_transcript((self.outdir / "ami.log").read_bytes())
        miitel_msgs = read_transcript((self.outdir / "ami_miitel.log").read_bytes())
        files = sorted({p for p in self.lab.recordings_dir.rglob("*") if p.is_file()}
                       - self.before)
        vm = sorted(p for p in self.lab.voicemail_dir.rglob("*") if p.is_file()
                    and "INBOX" in p.parts)
        copied: dict[str, str] = {}
        for src in files + vm:
            dst = self.outdir / src.name
            if dst.exists():
                dst = self.outdir / f"{src.parent.name}-{src.name}"
            shutil.copy2(src, dst)
            copied[str(src)] = dst.name
        recs = analysis.recordings(admin_msgs)
        measured: list[dict[str, Any]] = []
        for rec in recs:
            entry: dict[str, Any] = {"file": rec.file, "copied_as": copied.get(rec.file),
                                     "channel": rec.channel, "uniqueid": rec.uniqueid,
                                     "linkedid": rec.linkedid, "mode": rec.mode or None,
                                     "started": iso(rec.started)}
            path = Path(rec.file)
            if path.exists():
                info = analyse(path)
                entry["audio"] = info.as_dict()
                stop = next((m.timestamp for m in admin_msgs if m.event == "MixMonitorStop"
                             and m.get("Uniqueid") == rec.uniqueid and m.timestamp
                             and rec.started and m.timestamp >= rec.started), None)
                hang = analysis.hangup_time(admin_msgs, rec.uniqueid)
                entry["bridged_seconds"] = analysis.bridged_seconds(
                    admin_msgs, rec.uniqueid, since=rec.started, until=stop or hang)
                entry["length_minus_bridged"] = round(info.seconds - entry["bridged_seconds"], 3)
                closed = self.watcher.last_close(rec.file)
                entry["closed"] = iso(closed)
                entry["stopped_by_StopMixMonitor"] = stop is not None
                if rec.receive or rec.transmit:
                    entry["legs"] = {
                        name: {"file": leg, "copied_as": copied.get(leg),
                               "audio": analyse(leg).as_dict() if Path(leg).exists() else None,
                               "closed": iso(self.watcher.last_close(leg))}
                        for name, leg in (("receive", rec.receive), ("transmit", rec.transmit))}
                ref = stop or hang
                entry["closed_after_hangup_or_stop_s"] = (
                    round(closed - ref, 3) if closed and ref else None)
            else:
                entry["missing"] = True
            measured.append(entry)
        for p in vm:
            if p.suffix == ".wav":
                measured.append({"file": str(p), "copied_as": copied.get(str(p)),
                                 "voicemail": True, "audio": analyse(p).as_dict(),
                                 "closed": iso(self.watcher.last_close(str(p)))})
        last = analysis.last_hangup(admin_msgs)
        closes = [t for t, p in self.watcher.closed if p in {r.file for r in recs}]
        truth.times.setdefault("capture_start", iso(self.t_start))
        truth.times.setdefault("capture_end", iso(self.t_end))
        data: dict[str, Any] = {
            "scenario": self.name,
            "flavour": self.lab.flavour,
            "asterisk": self.lab.asterisk_version,
            "description": truth.description,
            "parties": [p.as_dict() for p in truth.parties],
            "answered_by": truth.answered_by,
            "did": truth.did,
            "dialled": truth.dialled,
            "queue": truth.queue,
            "group": truth.group,
            "expected": truth.expected,
            "times": truth.times,
            "notes": truth.notes,
            "sipp": {role: {"scenario": r.name, "exit": r.returncode,
                            "command": " ".join(r.command[1:]).replace(str(self.lab.run_dir),
                                                                        "$RUN"),
                            "started": iso(r.started), "ended": iso(r.ended)}
                     for role, r in self.results.items()},
            "measured": {
                "recordings": measured,
                "last_hangup": iso(last),
                "last_recording_closed_after_last_hangup_s": (
                    round(max(closes) - last, 3) if closes and last else None),
                "events_admin": analysis.count(admin_msgs),
                "events_admin_with_testevent": analysis.count(admin_msgs, exclude=()),
                "events_miitel": analysis.count(miitel_msgs),
                "events_admin_by_name": analysis.by_name(admin_msgs),
                "filter_check": analysis.filter_check(admin_msgs, miitel_msgs),
            },
            "files": [*sorted(p.name for p in self.outdir.iterdir()), "scenario.json"],
        }
        (self.outdir / "scenario.json").write_text(
            json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        failed = {role: r.returncode for role, r in self.results.items() if not r.ok}
        if failed:
            log(f"{self.name}: sipp failures {failed}")
            for r in self.results.values():
                if not r.ok:
                    log(r.summary())
        return data


def run_captures(names: list[str] | None = None, outdir: Path = CAPTURE_DIR) -> dict[str, Any]:
    """Run the named scenarios (all when None) on one lab; return a summary."""
    todo = names or list(SCENARIOS)
    unknown = [n for n in todo if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    summary: dict[str, Any] = {}
    with Lab() as lab:
        for name in todo:
            flavour, fn = SCENARIOS[name]
            lab.use_flavour(flavour)
            t0 = time.monotonic()
            with Capture(lab, name, outdir / name) as cap:
                truth = fn(lab, cap)
                data = cap.finish(truth)
            m = data["measured"]
            summary[name] = {"seconds": round(time.monotonic() - t0, 1),
                             "sipp": {k: v["exit"] for k, v in data["sipp"].items()},
                             "events_admin": m["events_admin"],
                             "events_miitel": m["events_miitel"],
                             "filter_ok": m["filter_check"]["ok"],
                             "recordings": [(Path(r["file"]).name,
                                             r.get("audio", {}).get("louder_side"),
                                             r.get("length_minus_bridged"),
                                             r.get("closed_after_hangup_or_stop_s"))
                                            for r in m["recordings"]]}
            log(f"captured {name}: {json.dumps(summary[name], ensure_ascii=False)}")
        lab.use_flavour("plain")
    return summary

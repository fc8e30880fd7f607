"""Run sipp scenarios (tests/sipp/*.xml) as phones and the carrier."""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "sipp"
PCAP_SOURCE = Path("/usr/share/sip-tester")


@dataclass
class SippResult:
    """What one sipp run did: exit code and its logs."""

    name: str
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    messages: str
    errors: str
    started: float
    ended: float
    workdir: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def summary(self) -> str:
        tail = "\n".join((self.errors or self.stderr or self.stdout).splitlines()[-15:])
        return (f"sipp {self.name} exit {self.returncode} after {self.seconds:.1f} s\n"
                f"  {' '.join(self.command)}\n{tail}")

    def check(self) -> SippResult:
        if not self.ok:
            raise AssertionError(self.summary())
        return self


class SippProcess:
    """A running sipp instance; ``wait()`` gives its SippResult."""

    def __init__(self, name: str, command: list[str], workdir: Path, timeout: float) -> None:
        self.name = name
        self.command = command
        self.workdir = workdir
        self.timeout = timeout
        self.started = time.time()
        self._out = open(workdir / "stdout.txt", "wb")
        self._err = open(workdir / "stderr.txt", "wb")
        self.proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err,
                                     start_new_session=True)
        self._result: SippResult | None = None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> SippResult:
        if self._result is not None:
            return self._result
        try:
            code = self.proc.wait(timeout=timeout if timeout is not None else self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.wait()
            (self.workdir / "stderr.txt").open("a").write(
                f"\n[lab] sipp killed after {self.timeout:.0f} s without finishing\n")
            code = code if code not in (0, None) else -9
        ended = time.time()
        self._out.close()
        self._err.close()

        def read(name: str) -> str:
            path = self.workdir / name
            return path.read_text(errors="replace") if path.exists() else ""

        self._result = SippResult(self.name, self.command, code, read("stdout.txt"),
                                  read("stderr.txt"), read("messages.log"), read("errors.log"),
                                  self.started, ended, self.workdir)
        return self._result

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def scenario_path(scenario: str | Path) -> Path:
    path = Path(scenario)
    if path.suffix != ".xml":
        path = SCENARIO_DIR / f"{scenario}.xml"
    if not path.is_file():
        raise FileNotFoundError(f"no sipp scenario {scenario!r} ({path})")
    return path


AUDIO_PCAPS = {"talk": "pcap/long.pcap", "silent": "pcap/silence.pcap"}
_PLAY = re.compile(r'play_pcap_audio="pcap/(?:long|silence)\.pcap"')
_TONE = re.compile(r"tone-(\d{2,4})")


def with_audio(scenario: Path, workdir: Path, audio: str) -> Path:
    """A copy of ``scenario`` in ``workdir`` whose party talks ("talk"), sends RTP
    silence ("silent") or a pure tone ("tone-440": see tones.py) instead, so one
    scenario serves every kind of party. A tone's stream starts further on in
    RTP sequence numbers for each later `play_pcap_audio` of the scenario (a
    phone's next call is a new stream: tones.tone_pcap says why)."""
    tone = _TONE.fullmatch(audio)
    if not tone and audio not in AUDIO_PCAPS:
        raise ValueError(f"audio must be one of {sorted(AUDIO_PCAPS)} or tone-<Hz>")
    plays = iter(range(100))

    def play(_match: re.Match[str]) -> str:
        if not tone:
            return f'play_pcap_audio="{AUDIO_PCAPS[audio]}"'
        freq, stream = int(tone.group(1)), next(plays)
        pcap = f"pcap/tone-{freq}" + (f"-{stream}" if stream else "") + ".pcap"
        if not (workdir / pcap).exists():
            from .tones import tone_pcap
            silence = (workdir / "pcap" / "silence.pcap").read_bytes()
            (workdir / pcap).write_bytes(tone_pcap(silence, freq, stream))
        return f'play_pcap_audio="{pcap}"'

    text = scenario.read_text(encoding="utf-8")
    changed, count = _PLAY.subn(play, text)
    if not count:
        raise ValueError(f"{scenario.name} plays no pcap audio to replace")
    out = workdir / scenario.name
    out.write_text(changed, encoding="utf-8")
    return out


def prepare_workdir(workdir: Path) -> None:
    """A sipp working directory with the pcap audio in ./pcap/.

    g711a.pcap is sip-tester's 7 s of G.711 A-law speech; long.pcap repeats it
    for LONG_PCAP_SECONDS (RTP sequence numbers and timestamps kept running),
    so a talking party talks for the whole call. silence.pcap is the same
    stream with every sample A-law silence: a "silent" party still sends RTP,
    as real phones do (without media Asterisk's MixMonitor writes nothing).
    """
    pcap = workdir / "pcap"
    pcap.mkdir(parents=True, exist_ok=True)
    src = PCAP_SOURCE / "g711a.pcap"
    if not src.exists():
        raise FileNotFoundError(f"{src} is missing: apt-get install sip-tester")
    if not (pcap / "g711a.pcap").exists():
        shutil.copy(src, pcap / "g711a.pcap")
    if not (pcap / "long.pcap").exists():
        (pcap / "long.pcap").write_bytes(repeat_rtp_pcap(src.read_bytes(), LONG_PCAP_SECONDS))
    if not (pcap / "silence.pcap").exists():
        (pcap / "silence.pcap").write_bytes(
            repeat_rtp_pcap(src.read_bytes(), LONG_PCAP_SECONDS, silence=True))


LONG_PCAP_SECONDS = 90.0


ALAW_SILENCE = 0xD5


def repeat_rtp_pcap(data: bytes, seconds: float, *, silence: bool = False) -> bytes:
    """Loop a pcap of one RTP stream (Ethernet/IPv4/UDP) for ``seconds``.

    With ``silence`` every payload byte becomes A-law silence (same timing).
    """
    header = data[:24]
    magic = struct.unpack("<I", data[:4])[0]
    if magic != 0xA1B2C3D4:
        raise ValueError("expected a little-endian microsecond pcap")
    packets: list[tuple[float, bytes]] = []
    off = 24
    while off + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack("<IIII", data[off:off + 16])
        packets.append((sec + usec / 1e6, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    if not packets:
        raise ValueError("empty pcap")
    rtp_at = 14 + 20 + 8  # Ethernet + IPv4 (no options) + UDP
    quiet = {ALAW_SILENCE, ALAW_SILENCE ^ 0x80}
    if not silence:  # start with speech: sip-tester's pcap opens with 0.6 s of silence
        first = next((i for i, (_t, pkt) in enumerate(packets)
                      if set(pkt[rtp_at + 12:]) - quiet), 0)
        packets = packets[first:] + packets[:first]

    def seq_ts(pkt: bytes) -> tuple[int, int]:
        seq, ts = struct.unpack(">HI", pkt[rtp_at + 2:rtp_at + 8])
        return seq, ts

    t_first = min(t for t, _ in packets)
    seq0, ts0 = seq_ts(packets[0][1])
    frame_ts = 240
    if len(packets) > 1:
        frame_ts = (seq_ts(packets[1][1])[1] - ts0) & 0xFFFFFFFF or 240
    frame_dt = frame_ts / 8000.0
    out = bytearray(header)
    for n in range(int(seconds / frame_dt)):
        body = bytearray(packets[n % len(packets)][1])
        struct.pack_into(">H", body, rtp_at + 2, (seq0 + n) & 0xFFFF)
        struct.pack_into(">I", body, rtp_at + 4, (ts0 + n * frame_ts) & 0xFFFFFFFF)
        struct.pack_into(">H", body, 14 + 20 + 6, 0)  # UDP checksum: none
        if silence:
            start = rtp_at + 12 + 4 * (body[rtp_at] & 0x0F)
            body[start:] = bytes([ALAW_SILENCE]) * (len(body) - start)
        when = t_first + n * frame_dt
        sec = int(when)
        out += struct.pack("<IIII", sec, round((when - sec) * 1e6) % 1000000,
                           len(body), len(body))
        out += body
    return bytes(out)


def write_inf(path: Path, rows: Sequence[Sequence[str]]) -> None:
    lines = ["SEQUENTIAL"] + [";".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_command(scenario: Path, *, ip: str, port: int, media_port: int, target: str,
                  service: str | None, inf: Path | None, calls: int, rate: float | None,
                  limit: int | None, duration_ms: int | None, timeout: float,
                  extra: Sequence[str]) -> list[str]:
    sipp = shutil.which("sipp") or "/usr/bin/sipp"
    cmd = [sipp, "-sf", str(scenario), "-i", ip, "-p", str(port), "-mi", ip,
           "-mp", str(media_port), "-m", str(calls), "-nostdin",
           "-trace_msg", "-message_file", "messages.log",
           "-trace_err", "-error_file", "errors.log",
           "-timeout", f"{int(timeout)}s", "-timeout_error"]
    if service:
        cmd += ["-s", service]
    if inf is not None:
        cmd += ["-inf", str(inf)]
    if rate is not None:
        cmd += ["-r", str(rate), "-rp", "1000"]
    if limit is not None:
        cmd += ["-l", str(limit)]
    if duration_ms is not None:
        cmd += ["-d", str(duration_ms)]
    cmd += list(extra)
    cmd.append(target)
    return cmd

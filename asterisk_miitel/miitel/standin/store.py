"""What the stand-in remembers, as JSON files under its data directory.

    data_dir/webhook.json            {"path": "/webhook/<token>"}: same URL after a restart
    data_dir/calls/<key>.json        one call history (key: hash of its call_data_id)
    data_dir/grants/<hash>.json      one upload URL (hash of its token; the token is not kept)
    data_dir/audio/<key>.<format>    the last file uploaded for a call
    data_dir/tmp/                    uploads in progress

Every change is written at once (write to a temporary file, then rename), so a
stand-in killed at any moment restarts with what it had answered.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...recordings.probe import AudioInfo

# The messages MiiTel shows on a call history whose recording is missing or
# cannot be analysed (quoted from MiiTel's help article).
NOT_UPLOADED = (
    "Analytics engine is not started because the audio file has not been uploaded "
    "or is uploading"
)
ANALYSIS_FAILED = (
    "Failed to Analyze data because of call duration is too short to analyze "
    "or a problem in recording"
)
CHANNELS = {"STEREO": 2, "MONAURAL": 1}

CallRecord = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Grant:
    """One issued upload URL."""

    call_key: str
    issued_at: float
    expires_at: float
    query: str  # the exact query string issued; any other is a bad signature


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def call_key(call_data_id: str) -> str:
    # call_data_id is any string: never use it as a file name.
    return hashlib.sha256(call_data_id.encode("utf-8")).hexdigest()[:32]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def judge(call_data: dict[str, Any], info: AudioInfo) -> tuple[str, str | None, str | None]:
    """(status, MiiTel's error text, why) for an uploaded file."""
    declared = call_data.get("audio_file_type")
    if info.file_type is None:
        return "failed", ANALYSIS_FAILED, info.problem or "not an audio file"
    if info.file_type != declared:
        return "failed", ANALYSIS_FAILED, (
            f"file is {info.file_type} but audio_file_type is {declared}"
        )
    if info.file_type == "wav":
        if info.problem:
            return "failed", ANALYSIS_FAILED, info.problem
        wanted = CHANNELS.get(call_data.get("audio_channel_type") or "STEREO")
        if info.channels != wanted:
            return "failed", ANALYSIS_FAILED, (
                f"WAV has {info.channels} channel(s) but audio_channel_type is "
                f"{call_data.get('audio_channel_type')}"
            )
    return "uploaded", None, None


class Store:
    """Call histories and upload grants; the in-memory view mirrors the files."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self._calls: dict[str, CallRecord] = {}  # by call key
        self._grants: dict[str, Grant] = {}  # by token hash

    def open(self) -> None:
        for sub in ("calls", "grants", "audio", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((self.data_dir / "calls").glob("*.json")):
            self._calls[path.stem] = json.loads(path.read_text("utf-8"))
        for path in (self.data_dir / "grants").glob("*.json"):
            self._grants[path.stem] = Grant(**json.loads(path.read_text("utf-8")))
        for leftover in (self.data_dir / "tmp").iterdir():
            leftover.unlink(missing_ok=True)  # uploads cut short by a restart

    def webhook_path(self) -> str:
        """The webhook path, made up once and kept."""
        path = self.data_dir / "webhook.json"
        if path.exists():
            return str(json.loads(path.read_text("utf-8"))["path"])
        webhook = f"/webhook/{secrets.token_urlsafe(24)}"
        _write_json(path, {"path": webhook})
        return webhook

    # -- call histories ------------------------------------------------------

    def record_post(self, call_data: dict[str, Any], now: float) -> str:
        """Create (or count again) the call history; return its key."""
        key = call_key(call_data["call_data_id"])
        record = self._calls.get(key)
        if record is None:
            record = {
                "call_data_id": call_data["call_data_id"],
                "received_at": iso(now),
                "post_count": 0,
                "status": "waiting_upload",
                "error": NOT_UPLOADED,
                "error_detail": None,
                "put_count": 0,
                "file": None,
                "format": None,
                "channels": None,
                "sample_rate": None,
                "duration": None,
                "bytes": None,
                "uploaded_at": None,
            }
        record["call_data"] = call_data
        record["post_count"] += 1
        record["last_received_at"] = iso(now)
        self._save_call(key, record)
        return key

    def record_upload(self, key: str, temp: Path, info: AudioInfo, size: int,
                      now: float) -> CallRecord:
        """Move a complete upload into place and judge it as MiiTel would."""
        record = self._calls[key]
        audio = self.data_dir / "audio" / f"{key}.{info.file_type or 'bin'}"
        old = record.get("file")
        os.replace(temp, audio)
        if old and old != str(audio):
            Path(old).unlink(missing_ok=True)  # a repeated PUT replaces the file
        status, error, detail = judge(record["call_data"], info)
        record.update(
            status=status, error=error, error_detail=detail, file=str(audio),
            format=info.file_type, channels=info.channels, sample_rate=info.sample_rate,
            duration=info.duration, bytes=size, uploaded_at=iso(now),
            put_count=record["put_count"] + 1,
        )
        self._save_call(key, record)
        return record

    def calls(self) -> list[CallRecord]:
        return sorted(self._calls.values(), key=lambda r: (r["received_at"], r["call_data_id"]))

    def call(self, call_data_id: str) -> CallRecord | None:
        return self._calls.get(call_key(call_data_id))

    def _save_call(self, key: str, record: CallRecord) -> None:
        self._calls[key] = record
        _write_json(self.data_dir / "calls" / f"{key}.json", record)

    # -- upload grants ---------------------------------------------------------

    def add_grant(self, token: str, grant: Grant) -> None:
        digest = _token_hash(token)
        self._grants[digest] = grant
        _write_json(self.data_dir / "grants" / f"{digest}.json", asdict(grant))

    def prune_grants(self, expired_before: float) -> int:
        """Forget upload URLs that expired before then (a staging stand-in runs for months)."""
        old = [h for h, g in self._grants.items() if g.expires_at < expired_before]
        for digest in old:
            del self._grants[digest]
            (self.data_dir / "grants" / f"{digest}.json").unlink(missing_ok=True)
        return len(old)

    def grant(self, token: str) -> Grant | None:
        return self._grants.get(_token_hash(token))

    def temp_upload(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.data_dir / "tmp", suffix=".part")
        os.close(fd)
        return Path(name)


def _write_json(path: Path, doc: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1), "utf-8")
    os.replace(tmp, path)

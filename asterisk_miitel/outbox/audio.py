"""What the outbox stores of a call's audio (the `audio` column, JSON): which
file(s) to send and how to read them, until the sender prepares them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..recordings.spec import ChannelType, FileType, RecordingMode, RecordingSpec


@dataclass(frozen=True, slots=True)
class AudioPlan:
    """Which file(s) to send and what MiiTel is told about them (until the
    real file is prepared and says otherwise)."""

    file: str
    mode: RecordingMode
    receive: str | None
    transmit: str | None
    file_type: FileType
    channel_type: ChannelType
    expected_duration: float | None  # seconds two parties were bridged
    voicemail: bool = False  # VM_MESSAGEFILE: a base name, the extension is found later
    expect_audio: bool = True  # False for a missed call sent without audio
    # Only this part of the file, in seconds from its start (end None: to its
    # end): one conversation of a recording cut at a transfer. None: all of it.
    window: tuple[float, float | None] | None = None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "file": self.file, "mode": self.mode, "receive": self.receive,
            "transmit": self.transmit, "file_type": self.file_type,
            "channel_type": self.channel_type, "expected_duration": self.expected_duration,
            "voicemail": self.voicemail, "expect_audio": self.expect_audio,
        }
        if self.window is not None:
            data["window"] = list(self.window)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> AudioPlan:
        values: dict[str, Any] = dict(data)  # as stored: JSON, the fields by name
        window = values.pop("window", None)
        plan = cls(**values)
        if isinstance(window, list | tuple) and len(window) == 2:
            start, end = window
            plan = replace(plan, window=(float(start), None if end is None else float(end)))
        return plan

    def spec(self, file: str | None = None) -> RecordingSpec:
        """What recordings.prepare() needs; `file` overrides (a voicemail's real name)."""
        mode = self.mode if self.mode != "legs" or (self.receive and self.transmit) else "unknown"
        return RecordingSpec(
            file=file or self.file,
            mode=mode,
            receive=self.receive if mode == "legs" else None,
            transmit=self.transmit if mode == "legs" else None,
            expected_duration=self.expected_duration,
            window=self.window,
        )

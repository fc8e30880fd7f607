"""Turn any Asterisk recording into a file MiiTel takes: `prepare()`.

MiiTel reads WAV, MP3 and M4A and splits speakers by channel when told
STEREO. What we do with each input:

- interleaved ``.raw`` (MixMonitor ``D``): a header is put in front of the
  bytes, which already are interleaved s16le; LEFT = from the channel.
- ``legs`` (``r()``/``t()``): the two mono files are interleaved into one
  stereo WAV, receive LEFT, transmit RIGHT; the shorter is padded with
  silence, never truncated.
- a PCM 16-bit WAV with a true header, MP3, M4A: sent as they are.
- a PCM WAV whose header lies (Asterisk killed before closing it): rewritten
  with the real size, with a warning.
- formats MiiTel may not read: G.711 WAVs and ``.ulaw``/``.alaw`` raw are
  decoded by our table decoder (g711.py: Python's audioop is gone in 3.13);
  ``.sln*``/``.slin``/``.raw`` get a header; GSM 6.10 (``.gsm``, ``wav49``
  ``.WAV``) and other compressed WAVs go through libsndfile (soundfile), the
  maintained reference decoder, rather than a GSM decoder of our own.

Every path streams in chunks of CHUNK_FRAMES frames: memory stays at a few MB
whatever the size of the recording.

Channel type: STEREO only when the file really has two channels and the
tracker did not say the recording is a mono mix. When the channel count of an
MP3/M4A cannot be read we send MONAURAL: MiiTel then separates the speakers
itself, which works for any file, while STEREO on a mix duplicated on both
sides would give every sentence to both parties.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import struct
from array import array
from dataclasses import dataclass

from .allowed import AllowedDirs, Opener, open_plain
from .containers import StreamInfo, m4a_info, mp3_info
from .disk import DEFAULT_RESERVE_BYTES, disk_space_problem
from .errors import (
    EmptyRecording,
    IncompatibleLegs,
    InsufficientDiskSpace,
    RecordingMissing,
    RecordingUnreadable,
    UnsupportedRecording,
    unreadable_message,
)
from .g711 import Law
from .probe import (
    HEAD_BYTES,
    WAVE_FORMAT_ALAW,
    WAVE_FORMAT_EXTENSIBLE,
    WAVE_FORMAT_MULAW,
    WAVE_FORMAT_PCM,
    AudioInfo,
    probe,
)
from .sources import G711Source, PcmSource, RawPcmSource, SoundFileSource, WindowSource
from .spec import ChannelType, FileType, PreparedAudio, RecordingSpec
from .wavio import HEADER_BYTES, WavWriter, copy_with_fixed_header, make_private_dir

CHUNK_FRAMES = 64 * 1024  # 256 KiB of stereo s16 per read
DURATION_TOLERANCE = 0.5  # seconds of disagreement with the bridged time before we warn

# Headerless signed-linear extensions of Asterisk's format_sln (None: .raw, 8 kHz
# unless the spec says otherwise).
SLIN_RATES: dict[str, int | None] = {
    "raw": None, "sln": None, "slin": None,
    "sln12": 12000, "sln16": 16000, "sln24": 24000, "sln32": 32000,
    "sln44": 44100, "sln48": 48000, "sln96": 96000, "sln192": 192000,
}
ULAW_EXTS = frozenset({"ulaw", "ul", "mu", "ulw", "pcm"})  # format_pcm's µ-law names
ALAW_EXTS = frozenset({"alaw", "al", "alw"})
# Asterisk formats nothing here decodes: say so precisely.
UNDECODABLE = frozenset(
    {"g722", "g729", "g723", "g723sf", "g726-16", "g726-24", "g726-32", "g726-40",
     "ilbc", "siren7", "siren14", "h263", "h264", "spx"}
)


@dataclass(frozen=True, slots=True)
class _AsIs:
    """A file we upload unchanged."""

    path: str
    file_type: FileType
    channels: int | None
    duration: float | None


def prepare(
    spec: RecordingSpec,
    work_dir: str | os.PathLike[str],
    *,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    allowed: AllowedDirs | None = None,
) -> PreparedAudio:
    """Make `spec`'s recording uploadable; write any new file into `work_dir`.

    Blocking (file I/O): the service runs it in a thread, see prepare_async.
    Raises a RecordingError subclass whose message names the file and the fix.
    With `allowed` (the service always gives it), a file outside those
    folders is refused before it is opened (OutsideRecordingDirs), and every
    open is checked again on its descriptor.
    """
    return _Job(spec, os.fspath(work_dir), reserve_bytes, allowed).run()


async def prepare_async(
    spec: RecordingSpec,
    work_dir: str | os.PathLike[str],
    *,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    allowed: AllowedDirs | None = None,
) -> PreparedAudio:
    """`prepare` in a worker thread, so the event loop keeps serving AMI."""
    return await asyncio.to_thread(
        prepare, spec, work_dir, reserve_bytes=reserve_bytes, allowed=allowed
    )


def guess_interleaved_rate(
    size_bytes: int, expected_duration: float, candidates: tuple[int, ...] = (8000, 16000)
) -> int | None:
    """The rate at which a ``D`` recording of `size_bytes` lasts `expected_duration`.

    A D file holds 4 bytes per frame (2 channels x 16 bit), so 8 kHz is
    32000 B/s and 16 kHz 64000 B/s. Returns the candidate whose duration is
    within max(0.5 s, 5 %) of the bridged time, or None when none fits (a
    recording that started before the answer, or a broken file). Only a hint:
    the recording may legitimately cover more than the bridged time.
    """
    if expected_duration <= 0:
        return None
    best = min(candidates, key=lambda r: abs(size_bytes / (4 * r) - expected_duration))
    error = abs(size_bytes / (4 * best) - expected_duration)
    return best if error <= max(DURATION_TOLERANCE, 0.05 * expected_duration) else None


def interleave(left: bytes, right: bytes) -> memoryview:
    """Two equally long mono s16 buffers into one stereo buffer (L R L R ...)."""
    out = array("H", bytes(len(left) * 2))
    out[0::2] = array("H", left)
    out[1::2] = array("H", right)
    return memoryview(out).cast("B")


class _Job:
    def __init__(
        self, spec: RecordingSpec, work_dir: str, reserve_bytes: int,
        allowed: AllowedDirs | None = None,
    ) -> None:
        self.spec = spec
        self.allowed = allowed
        # Asterisk's files open through the rule; our own (work_dir) plainly.
        self.opener: Opener = allowed.open_file if allowed is not None else open_plain
        self.work_dir = work_dir
        self.reserve_bytes = reserve_bytes
        self.warnings: list[str] = []
        self.temps: list[str] = []
        self.mono_mix = spec.mode == "mono"  # the tracker says: a mix, send MONAURAL
        self.d_recording = False  # the source is MixMonitor D interleaved data
        self.duration_warned = False

    def run(self) -> PreparedAudio:
        if self.allowed is not None:
            self.allowed.check_all(self.spec.paths)  # refused before any stat or open
        make_private_dir(self.work_dir)
        try:
            if self.spec.mode == "legs":
                return self._legs()
            return self._single(self.spec.file)
        finally:
            for tmp in self.temps:
                _unlink(tmp)

    # -- one file -------------------------------------------------------

    def _single(self, path: str) -> PreparedAudio:
        # A window (one conversation of the file) is always cut out: never as is.
        opened = self._open(path, passthrough=self.spec.window is None, allow_empty=False)
        if isinstance(opened, _AsIs):
            return self._result_as_is(opened)
        opened = self._cut(opened)
        try:
            return self._convert(opened)
        finally:
            opened.close()

    def _cut(self, source: PcmSource) -> PcmSource:
        """Only the spec's window of `source`, when it has one."""
        if self.spec.window is None:
            return source
        start, end = self.spec.window
        cut = WindowSource(source, start, end)
        if source.rate and cut.skipped < round(start * source.rate):
            self.warnings.append(
                f"{source.path} holds {source.frames / source.rate:.1f} s, less than the "
                f"{start:.1f} s where this conversation starts (a D file grows only while "
                "audio flows): nothing of it is in the file"
            )
        return cut

    def _open(self, path: str, *, passthrough: bool, allow_empty: bool) -> PcmSource | _AsIs:
        size = _check_file(path, allow_empty=allow_empty, opener=self.opener)
        if size == 0:
            return RawPcmSource(path, rate=self._raw_rate(path), channels=1, offset=0, length=0,
                                opener=self.opener)
        info = probe(path, self.opener)
        if info.text:
            raise UnsupportedRecording(
                path,
                f"{path} holds text, not audio (whatever its name says): not sent. Check "
                "what wrote this file and the recording name the dialplan gave MixMonitor",
            )
        if info.file_type == "wav":
            return self._open_wav(path, info, size, passthrough=passthrough)
        if info.file_type in ("mp3", "m4a"):
            assert info.file_type is not None
            if passthrough:
                meta = _stream_info(path, info.file_type, self.opener)
                return _AsIs(path, info.file_type, meta.channels, meta.duration)
            # a leg in MP3 (post-processed): libsndfile >= 1.1 decodes MP3
            return SoundFileSource(path, self.opener)
        return self._open_headerless(path, size)

    def _open_wav(
        self, path: str, info: AudioInfo, size: int, *, passthrough: bool
    ) -> PcmSource | _AsIs:
        if info.header_bytes is None or info.data_bytes is None:
            if size <= HEAD_BYTES:
                raise EmptyRecording(
                    path,
                    f"{path} is only a WAV header ({size} bytes) with no audio: the recording "
                    "started but no sound was written (a leg that was never answered, or "
                    "Asterisk stopped at once). Nothing to send",
                )
            return self._libsndfile(path, info)  # an unusual chunk layout
        align = info.block_align or 1
        if info.data_bytes < align:
            raise EmptyRecording(
                path,
                f"{path} has a WAV header but no audio data: the call recorded nothing "
                "(never answered, or the recording was stopped at once). Nothing to send",
            )
        if info.problem:
            self.warnings.append(
                f"{path}: {info.problem}; used the real size (Asterisk was probably stopped "
                "before it closed the file, so the end of the call may be missing)"
            )
        channels, rate = info.channels or 0, info.sample_rate or 0
        if not 1 <= channels <= 2 or rate <= 0:
            raise UnsupportedRecording(
                path,
                f"{path}: a WAV with {channels} channels at {rate} Hz: MiiTel needs mono or "
                "stereo; record with MixMonitor into .wav or .raw",
            )
        assert info.header_bytes is not None
        offset, length = info.header_bytes, info.data_bytes
        tag, bits = info.format_tag, info.bits_per_sample
        if tag in (WAVE_FORMAT_PCM, WAVE_FORMAT_EXTENSIBLE) and bits == 16:
            if self.spec.mode == "interleaved" and channels == 1:
                # D with a .wav name: Asterisk writes stereo frames under a mono
                # header (its docs: "you MUST use .raw"). The bytes are still
                # interleaved L/R, so read them as such.
                self.warnings.append(
                    f"{path}: MixMonitor's D option was used with a .wav name; the header "
                    "says mono but the data is interleaved stereo, read as stereo. Use .raw "
                    "with D in the dialplan"
                )
                self.d_recording = True
                return RawPcmSource(path, rate=rate, channels=2, offset=offset, length=length,
                                    opener=self.opener)
            if passthrough and not info.problem:
                return _AsIs(path, "wav", channels, info.duration)
            return RawPcmSource(path, rate=rate, channels=channels, offset=offset, length=length,
                                opener=self.opener)
        if tag in (WAVE_FORMAT_MULAW, WAVE_FORMAT_ALAW) and bits == 8:
            law: Law = "ulaw" if tag == WAVE_FORMAT_MULAW else "alaw"
            return G711Source(path, law, rate=rate, channels=channels, offset=offset,
                              length=length, opener=self.opener)
        return self._libsndfile(path, info)

    def _libsndfile(self, path: str, info: AudioInfo) -> PcmSource:
        """GSM 'wav49' and any other WAV coding libsndfile knows."""
        target = path
        if info.problem and info.header_bytes is not None:
            # libsndfile trusts the header: hand it a copy with the true sizes.
            # These files are compressed and small (GSM: 1.6 kB/s).
            target = self._temp_path(path, ".wav")
            copy_with_fixed_header(path, info, target, self.opener)
        source = SoundFileSource(target, self.opener if target == path else open_plain)
        source.path = path  # messages name the recording, not our temporary copy
        return source

    def _open_headerless(self, path: str, size: int) -> PcmSource:
        ext = _ext(path)
        if ext in SLIN_RATES:
            rate = self.spec.sample_rate or SLIN_RATES[ext] or 8000
            channels = self._raw_channels(path, ext, size, rate)
            source = RawPcmSource(path, rate=rate, channels=channels, offset=0, length=size,
                                  opener=self.opener)
            if source.trailing_bytes:
                self.warnings.append(
                    f"{path}: dropped {source.trailing_bytes} trailing bytes (half a frame: "
                    "the file was cut while being written)"
                )
            return source
        if ext in ULAW_EXTS or ext in ALAW_EXTS:
            law: Law = "ulaw" if ext in ULAW_EXTS else "alaw"
            return G711Source(path, law, rate=self.spec.sample_rate or 8000, channels=1,
                              offset=0, length=size, opener=self.opener)
        if ext == "gsm":
            return SoundFileSource(path, self.opener, samplerate=8000, channels=1, format="RAW",
                                   subtype="GSM610")
        if ext == "vox":  # Dialogic ADPCM, 8 kHz in Asterisk's format_vox
            return SoundFileSource(path, self.opener, samplerate=8000, channels=1, format="RAW",
                                   subtype="VOX_ADPCM")
        if ext in UNDECODABLE:
            raise UnsupportedRecording(
                path,
                f"{path}: Asterisk's '{ext}' recording format cannot be converted here; "
                "record with MixMonitor into .wav (mono) or .raw with the D option (stereo)",
            )
        try:
            return SoundFileSource(path, self.opener)  # Ogg, FLAC, AU, AIFF...: libsndfile
        except UnsupportedRecording:
            raise UnsupportedRecording(
                path,
                f"{path}: not a WAV, MP3 or M4A file, and '.{ext}' is not a recording "
                "format we convert (raw/sln*, ulaw, alaw, gsm, wav49). Record with MixMonitor "
                "into .wav (mono) or .raw with the D option (stereo)",
            ) from None

    def _raw_channels(self, path: str, ext: str, size: int, rate: int) -> int:
        mode = self.spec.mode
        if mode == "interleaved":
            self.d_recording = True
            return 2
        if mode in ("mono", "legs") or ext != "raw":
            return 1  # D "MUST use .raw": other slin names are mono
        # mode unknown, .raw: D (stereo) is how this project records .raw; a
        # bridged time lets us tell a mono 8 kHz file (half the bytes per second).
        expected = self.spec.expected_duration
        if expected and abs(size / (2 * rate) - expected) < abs(size / (4 * rate) - expected):
            self.warnings.append(
                f"{path}: mode unknown; its length fits mono {rate} Hz better than "
                "interleaved stereo, read as mono"
            )
            return 1
        self.warnings.append(
            f"{path}: mode unknown; read as MixMonitor D interleaved stereo ({rate} Hz)"
        )
        self.d_recording = True
        return 2

    def _raw_rate(self, path: str) -> int:
        return self.spec.sample_rate or SLIN_RATES.get(_ext(path)) or 8000

    def _check_rate(self, path: str, rate: int) -> None:
        if rate <= 0:
            raise UnsupportedRecording(path, f"{path}: the header gives no sample rate")

    # -- two legs -------------------------------------------------------

    def _legs(self) -> PreparedAudio:
        receive, transmit = self.spec.paths
        missing = [p for p in (receive, transmit) if not os.path.exists(p)]
        if missing:
            mixed = self.spec.file
            if (
                len(missing) == 1
                and (self.allowed is None or self.allowed.permits(mixed))
                and mixed not in (receive, transmit)
                and os.path.isfile(mixed)
                and os.path.getsize(mixed) > 0
            ):
                self.warnings.append(
                    f"{missing[0]} is missing, so the two sides cannot be separated; sent the "
                    f"mixed recording {mixed} as MONAURAL instead"
                )
                self.mono_mix = True
                return self._single(mixed)
            raise RecordingMissing(missing[0], _missing_message(missing[0]))
        left = self._open(receive, passthrough=False, allow_empty=True)
        right = self._open(transmit, passthrough=False, allow_empty=True)
        assert not isinstance(left, _AsIs) and not isinstance(right, _AsIs)
        left, right = self._cut(left), self._cut(right)
        try:
            return self._merge(left, right)
        finally:
            left.close()
            right.close()

    def _merge(self, left: PcmSource, right: PcmSource) -> PreparedAudio:
        for leg, side in ((left, "receive"), (right, "transmit")):
            if leg.channels != 1:
                raise IncompatibleLegs(
                    leg.path,
                    f"{leg.path} ({side}) has {leg.channels} channels; r() and t() files must "
                    "be mono. Check the MixMonitor options in the dialplan",
                )
        empty = [s for s in (left, right) if s.frames == 0]
        if len(empty) == 2:
            raise EmptyRecording(
                left.path,
                f"{left.path} and {right.path} hold no audio: the call recorded nothing "
                "(never answered, or the recording was stopped at once). Nothing to send",
            )
        # A zero-length leg may report its rate from its extension only: take the other's.
        if left.frames and right.frames and left.rate != right.rate:
            raise IncompatibleLegs(
                left.path,
                f"{left.path} is {left.rate} Hz but {right.path} is {right.rate} Hz: the two "
                "sides cannot be aligned. Record both r() and t() in the same format",
            )
        rate = left.rate if left.frames else right.rate
        longer = max(left.frames, right.frames)
        gap = abs(left.frames - right.frames) / rate
        if gap > DURATION_TOLERANCE:
            shorter = left if left.frames < right.frames else right
            self.warnings.append(
                f"{shorter.path} is {gap:.1f} s shorter than the other side; padded with "
                "silence at the end"
            )
        out = self._reserve(self.spec.file or left.path, HEADER_BYTES + 4 * longer)
        with WavWriter(out, rate, 2) as writer:
            while True:
                a = left.read(CHUNK_FRAMES)
                b = right.read(CHUNK_FRAMES)
                if not a and not b:
                    break
                n = max(len(a), len(b))
                writer.write(interleave(a.ljust(n, b"\0"), b.ljust(n, b"\0")))
        return self._result(out, "wav", 2, writer.frames / rate, converted=True)

    # -- writing and results ---------------------------------------------

    def _convert(self, source: PcmSource) -> PreparedAudio:
        self._check_rate(source.path, source.rate)
        if not 1 <= source.channels <= 2:
            raise UnsupportedRecording(
                source.path,
                f"{source.path} has {source.channels} channels; MiiTel needs mono or stereo",
            )
        if source.frames == 0:
            raise EmptyRecording(
                source.path,
                f"{source.path} holds no audio (less than one sample): the call recorded "
                "nothing. Nothing to send",
            )
        out = self._reserve(source.path, HEADER_BYTES + 2 * source.channels * source.frames)
        with WavWriter(out, source.rate, source.channels) as writer:
            while chunk := source.read(CHUNK_FRAMES):
                writer.write(chunk)
        if writer.frames == 0:
            _unlink(out)
            raise EmptyRecording(source.path, f"{source.path} decoded to no audio at all")
        duration = writer.frames / source.rate
        if self.d_recording:
            self._check_interleaved(source, duration)
        return self._result(out, "wav", source.channels, duration, converted=True)

    def _check_interleaved(self, source: PcmSource, duration: float) -> None:
        expected = self.spec.expected_duration
        if not expected or abs(duration - expected) <= DURATION_TOLERANCE:
            return
        guess = guess_interleaved_rate(4 * source.frames, expected)
        if guess and guess != source.rate:
            self.duration_warned = True
            self.warnings.append(
                f"{source.path}: read at {source.rate} Hz it lasts {duration:.1f} s, but at "
                f"{guess} Hz it would match the bridged {expected:.1f} s: if this call used "
                f"a wideband codec (G.722), the recording may be {guess} Hz: set its sample rate"
            )
        elif duration < expected / 2 + DURATION_TOLERANCE:
            self.duration_warned = True
            self.warnings.append(
                f"{source.path}: about half as long as the bridged time: some Asterisk "
                "releases write half-length D recordings; update Asterisk or record r()/t()"
            )

    def _result_as_is(self, item: _AsIs) -> PreparedAudio:
        return self._result(item.path, item.file_type, item.channels, item.duration,
                            converted=False)

    def _result(
        self,
        path: str,
        file_type: FileType,
        channels: int | None,
        duration: float | None,
        *,
        converted: bool,
    ) -> PreparedAudio:
        actual = probe(path, open_plain if converted else self.opener).file_type
        if actual != file_type:  # a bug here would make MiiTel fail the call
            raise AssertionError(f"{path}: made a {file_type!r} but the bytes are {actual!r}")
        channel_type = self._channel_type(path, channels)
        if self.spec.expected_duration is not None and duration is not None:
            gap = duration - self.spec.expected_duration
            if abs(gap) > DURATION_TOLERANCE and not self.duration_warned:
                self.warnings.append(
                    f"{path} lasts {duration:.1f} s but the call was bridged for "
                    f"{self.spec.expected_duration:.1f} s ("
                    + ("normal when recording starts before the answer)" if gap > 0
                       else "the recording is shorter than the call)")
                )
        return PreparedAudio(
            path=path,
            file_type=file_type,
            channel_type=channel_type,
            duration=duration,
            converted=converted,
            size_bytes=os.path.getsize(path),
            warnings=self.warnings,
        )

    def _channel_type(self, path: str, channels: int | None) -> ChannelType:
        if channels == 2 and self.mono_mix:
            self.warnings.append(
                f"{path} has two channels but the recording is a mono mix: sent MONAURAL"
            )
            return "MONAURAL"
        if channels == 2:
            return "STEREO"
        if channels is None:
            self.warnings.append(
                f"{path}: could not read its channel count; sent MONAURAL (MiiTel separates "
                "the speakers itself)"
            )
        elif self.spec.mode in ("interleaved", "legs") and not self.mono_mix:
            self.warnings.append(
                f"{path} is mono although a stereo recording was expected: sent MONAURAL"
            )
        return "MONAURAL"

    def _reserve(self, source_path: str, needed: int) -> str:
        problem = disk_space_problem(self.work_dir, needed, reserve_bytes=self.reserve_bytes)
        if problem:
            raise InsufficientDiskSpace(source_path, f"cannot convert {source_path}: {problem}")
        return os.path.join(self.work_dir, f"{_stem(source_path)}.{secrets.token_hex(4)}.wav")

    def _temp_path(self, source_path: str, suffix: str) -> str:
        path = os.path.join(self.work_dir,
                            f".{_stem(source_path)}.{secrets.token_hex(4)}.fixed{suffix}")
        self.temps.append(path)
        return path


def _check_file(path: str, *, allow_empty: bool, opener: Opener = open_plain) -> int:
    """Size of the file; typed errors for missing, unreadable and empty files."""
    try:
        with opener(path) as fh:
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise RecordingMissing(path, _missing_message(path)) from None
    except PermissionError:
        raise RecordingUnreadable(path, unreadable_message(path)) from None
    except IsADirectoryError:
        raise UnsupportedRecording(path, f"{path} is a folder, not a recording") from None
    if size == 0 and not allow_empty:
        raise EmptyRecording(
            path,
            f"{path} is empty (0 bytes): the recording started but no audio was written "
            "(never answered, or stopped at once). Nothing to send",
        )
    return size


def _missing_message(path: str) -> str:
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        where = (
            f"the folder {folder} does not exist here: check that Asterisk's recordings "
            "folder is mounted at the same path on this machine"
        )
    else:
        where = (
            "Asterisk did not write it (see its log for 'Cannot open'), or the file was "
            "moved or deleted (MixMonitor's d option, a cleanup script)"
        )
    return f"recording {path} not found: {where}"


def _stem(path: str) -> str:
    """The file's name without its extension: our own files are named after it."""
    return os.path.basename(path).rsplit(".", 1)[0] or "recording"


def _ext(path: str) -> str:
    base = os.path.basename(path)
    return base.rsplit(".", 1)[1].lower() if "." in base else ""


def _stream_info(path: str, file_type: FileType, opener: Opener = open_plain) -> StreamInfo:
    try:
        return mp3_info(path, opener) if file_type == "mp3" else m4a_info(path, opener)
    except (OSError, ValueError, IndexError, KeyError, struct.error):
        return StreamInfo(None, None)  # a header we cannot read: unknown, never fatal


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


"""What Asterisk's and FreePBX's own values mean: one place for the facts that
live tracking (calls/tracker.py), catch-up from CDRs (catchup/rebuild.py) and
the classifier read out of them.

Each function is pure and says which Asterisk or FreePBX behaviour it
encodes: names in channel snapshots, dialplan contexts, VoiceMail()'s
mailbox argument and its messages, MixMonitor's options and file formats.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from .mixmonitor import option_letters
from .state import Channel, Recording, RecordingMode, Segment

# -- names ----------------------------------------------------------------------------

# Since the AMI header-injection fixes, Asterisk writes caller and connected
# names in channel snapshots C-escaped (``ast_escape_c``): a quote arrives as
# ``\\"``, a backslash as ``\\\\``, a line break as ``\\n`` (verified on 22.10.1,
# tests/lab/README.md). MiiTel shows the name to people, so it gets the name
# as the caller set it, with control characters (line breaks from a lookup)
# folded to spaces: a name is one line.
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def plain_name(name: str) -> str:
    """A caller/connected name from a channel snapshot as the caller set it."""
    if "\\" in name:
        name = _ESCAPED.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), name)
    if not name.isprintable() and _CONTROL.search(name):  # (isprintable: C, no regex)
        name = _CONTROL.sub(" ", name).strip()
    return name


# -- dialplan contexts ------------------------------------------------------------------

ContextKind = Literal["internal", "external"]

# FreePBX's contexts a phone's channel enters the dialplan in ...
FREEPBX_INTERNAL_ENTRY = frozenset(
    {"from-internal", "from-internal-xfer", "from-internal-noxfer", "from-internal-additional"})
# ... and the ones its dialplan then runs a call through (extensions, queues,
# ring groups, the dial macro). A trunk's caller passes through them too: in
# the lab's FreePBX CDRs (tests/fixtures/cdr/freepbx_queue, freepbx_ringgroup)
# the trunk's row ends in ext-queues / ext-group.
FREEPBX_INTERNAL_DIALPLAN = frozenset(
    {"ext-local", "from-queue", "macro-dial-one", "ext-queues", "ext-group"})
FREEPBX_INTERNAL = FREEPBX_INTERNAL_ENTRY | FREEPBX_INTERNAL_DIALPLAN
# FreePBX's contexts of trunks and the DIDs they call (and its outbound-trunk macro).
FREEPBX_EXTERNAL = frozenset(
    {"from-trunk", "from-pstn", "from-did-direct", "ext-did", "macro-dialout-trunk",
     "from-pstn-e164-us", "from-pstn-toheader", "from-sip-external"})
# Custom contexts that wrap FreePBX's (e.g. our hooks' miitel-from-pstn,
# from-trunk-ntt) keep the name they wrap.
_EXTERNAL_MARKS = ("from-trunk", "from-pstn")
_INTERNAL_MARKS = ("from-internal",)
# The entry context FreePBX gives a phone and a trunk: what catch-up sets on a
# channel whose kind it learnt elsewhere, so the party rules read it the same.
PHONE_CONTEXT = "from-internal"
TRUNK_CONTEXT = "from-pstn"


def context_kind(context: str, internal: Collection[str] = (), external: Collection[str] = (),
                 *, dialplan: bool = True) -> tuple[ContextKind, str] | None:
    """(kind, rule) a dialplan context says of its channel, or None: it says nothing.

    `internal`/`external` are the configured pbx.*_contexts (rules
    "pbx.internal_contexts"/"pbx.external_contexts"), then FreePBX's own
    contexts and the contexts wrapping them ("freepbx-context"). With
    `dialplan=False` only contexts a channel enters the dialplan in count:
    for a context that may be where a call went rather than where the
    channel came from (a CDR row's dcontext), where FreePBX's internal
    dialplan contexts hold trunk callers too.
    """
    if context in internal:
        return "internal", "pbx.internal_contexts"
    if context in external:
        return "external", "pbx.external_contexts"
    if context in FREEPBX_EXTERNAL or any(m in context for m in _EXTERNAL_MARKS):
        return "external", "freepbx-context"
    phone = FREEPBX_INTERNAL if dialplan else FREEPBX_INTERNAL_ENTRY
    if context in phone or any(m in context for m in _INTERNAL_MARKS):
        return "internal", "freepbx-context"
    return None


# -- dialplan applications ---------------------------------------------------------------


def queue_name(appdata: str) -> str | None:
    """The queue Queue(queuename[,options...]) puts the caller in (Newexten's
    AppData, a CDR row's lastdata)."""
    return appdata.split(",", 1)[0] or None


# -- voicemail --------------------------------------------------------------------------


def voicemail_box(appdata: str) -> str | None:
    """The mailbox VoiceMail(mailbox[@context][&mailbox2...][,options]) records
    into: the first one (what a CDR row's lastdata and Newexten's AppData hold)."""
    return appdata.split(",", 1)[0].split("&", 1)[0] or None


def mailbox_parts(box: str) -> tuple[str, str]:
    """`1003@sales` -> ("1003", "sales"); app_voicemail's context defaults to
    `default`. The mailbox is the extension that owns it on FreePBX."""
    mailbox, _, context = box.partition("@")
    return mailbox, context or "default"


def voicemail_recording(ch: Channel, file: str, ended: float) -> Recording:
    """A voicemail message as a recording of its own: app_voicemail writes the
    caller alone (mono) into `file`, VM_MESSAGEFILE's name without the format's
    extension (found when it is sent). The caller talks from its channel's start."""
    rec = Recording(file=file, channel=ch, started=ch.created, mode="mono", voicemail_only=True)
    rec.left.append(Segment(party=ch, first=ch.created, last=ended, talk=ended - ch.created))
    rec.see(ch)
    rec.ended = ended
    rec.end_reason = "hangup"
    return rec


# -- MixMonitor's recordings --------------------------------------------------------------

# Formats whose MixMonitor file is one mixed channel (MixMonitor writes
# stereo only with D, and D "MUST use .raw"; ``wav49`` is written as .WAV,
# .mp3/.m4a/.ogg are a post-processed mix). A .raw or .slnNN name says nothing:
# this project records D into .raw, and the file decides (recordings/convert.py).
MIXED_EXTENSIONS = (".wav", ".wav49", ".gsm", ".mp3", ".m4a", ".ogg", ".sln", ".ulaw",
                    ".alaw")


def recording_mode(file: str, options: str = "") -> RecordingMode:
    """How a MixMonitor file holds the two sides, from its options and name:
    D interleaves them (stereo), r()/t() write each side to its own file
    (legs), a mixed format holds them mixed (mono). Our dialplan's
    MiiTelRecording event says it for sure; this is for what it did not."""
    letters = option_letters(options)
    if "D" in letters:
        return "interleaved"
    if "r" in letters and "t" in letters:
        return "legs"
    if file.lower().endswith(MIXED_EXTENSIONS):
        return "mono"
    return "unknown"


def bridged_only(options: str) -> bool | None:
    """MixMonitor's b option: the file holds only the time its channel was in a
    bridge (a call nobody answered leaves it empty). None: no options known
    (none seen yet, or none given: the tracker cannot tell which)."""
    return "b" in option_letters(options) if options else None

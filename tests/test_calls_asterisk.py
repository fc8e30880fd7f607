"""The Asterisk/FreePBX vocabulary (calls/asterisk.py), and that live tracking
and catch-up from CDRs read the same facts the same way."""

from __future__ import annotations

from typing import Any

import pytest

from asterisk_miitel.calls.asterisk import (
    bridged_only,
    context_kind,
    mailbox_parts,
    queue_name,
    recording_mode,
    voicemail_box,
    voicemail_recording,
)
from asterisk_miitel.calls.classify import Context, classify
from asterisk_miitel.calls.snapshot import dump_recording, load_recording
from asterisk_miitel.calls.state import Channel, Recording
from asterisk_miitel.calls.tracker import CallTracker
from asterisk_miitel.catchup.files import FileIndex
from asterisk_miitel.catchup.rebuild import BuildContext, CallBuilder
from asterisk_miitel.catchup.rows import CdrRow
from asterisk_miitel.config import Config
from asterisk_miitel.outbox.audio import AudioPlan

from .support import lab_config

T0 = 1795470000.0


# -- contexts -------------------------------------------------------------------------


@pytest.mark.parametrize(("context", "want"), [
    ("from-internal", ("internal", "freepbx-context")),
    ("from-internal-xfer", ("internal", "freepbx-context")),
    ("from-trunk", ("external", "freepbx-context")),
    ("from-pstn", ("external", "freepbx-context")),
    ("ext-did", ("external", "freepbx-context")),
    ("miitel-from-pstn", ("external", "freepbx-context")),  # our hooks wrap FreePBX's
    ("from-trunk-ntt", ("external", "freepbx-context")),
    ("default", None),
    ("", None),
])
def test_context_kind_of_freepbx_contexts(context: str, want: object) -> None:
    assert context_kind(context) == want
    assert context_kind(context, dialplan=False) == want  # entry contexts: both readings


def test_configured_contexts_come_before_freepbx_ones() -> None:
    assert context_kind("from-pstn", internal=["from-pstn"]) == (
        "internal", "pbx.internal_contexts")
    assert context_kind("office", external=["office"]) == ("external", "pbx.external_contexts")


@pytest.mark.parametrize("context", ["ext-local", "ext-queues", "ext-group", "macro-dial-one",
                                     "from-queue"])
def test_freepbx_dialplan_contexts_are_not_entry_contexts(context: str) -> None:
    """A channel created in them is a phone's; but a CDR row's dcontext is where
    the call went, and a trunk's caller ends in ext-queues/ext-group too (the
    lab's FreePBX queue and ring group CDRs): catch-up must not read them."""
    assert context_kind(context) == ("internal", "freepbx-context")
    assert context_kind(context, dialplan=False) is None


def test_queue_name_is_queues_first_argument() -> None:
    assert queue_name("support,t,,,60") == "support"
    assert queue_name(",t") is None


# -- voicemail --------------------------------------------------------------------------


@pytest.mark.parametrize(("appdata", "box"), [
    ("1003@default,u", "1003@default"),
    ("1003&1004,su", "1003"),
    ("1003", "1003"),
    (",u", None),
    ("", None),
])
def test_voicemail_box_is_the_first_mailbox(appdata: str, box: str | None) -> None:
    assert voicemail_box(appdata) == box


def test_mailbox_context_defaults_to_default() -> None:
    assert mailbox_parts("1003") == ("1003", "default")
    assert mailbox_parts("1003@sales") == ("1003", "sales")


def test_voicemail_message_is_the_callers_own_mono_recording() -> None:
    ch = Channel("1.1", "PJSIP/trunk-00000001", "1.1", T0)
    rec = voicemail_recording(ch, "/var/spool/asterisk/voicemail/default/1003/INBOX/msg0000",
                              T0 + 20)
    assert rec.voicemail_only and rec.mode == "mono"
    assert [(s.party, s.first, s.last, s.talk) for s in rec.left] == [(ch, T0, T0 + 20, 20)]
    assert rec.seen == [ch] and rec.ended == T0 + 20 and rec.end_reason == "hangup"


# -- MixMonitor -----------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "options", "mode"), [
    ("/rec/a.raw", "bDi(ID)", "interleaved"),
    ("/rec/a.wav", "D", "interleaved"),  # D wins over the name (convert warns)
    ("/rec/a.wav", "br(/rec/a-in.wav)t(/rec/a-out.wav)", "legs"),
    ("/rec/a.wav", "r(/rec/a-in.wav)", "mono"),  # one leg is no stereo
    ("/rec/a.WAV", "", "mono"),  # wav49
    ("/rec/a.gsm", "b", "mono"),
    ("/rec/a.sln", "", "mono"),
    ("/rec/a.raw", "", "unknown"),  # this project's D name: the file decides
    ("/rec/a.sln16", "", "unknown"),
])
def test_recording_mode(file: str, options: str, mode: str) -> None:
    assert recording_mode(file, options) == mode


def test_bridged_only_is_the_b_option() -> None:
    assert bridged_only("bDi(MIITEL_MIXMON_ID)") is True
    assert bridged_only("Dr(/x/b.wav)") is False  # a b inside an argument is no option
    assert bridged_only("") is None


def test_a_journal_from_before_bridged_only_keeps_what_its_options_said() -> None:
    ch = Channel("1.1", "PJSIP/trunk-00000001", "1.1", T0)
    rec = Recording("/rec/a.raw", ch, T0, mode="interleaved", options="bD", bridged_only=True)
    data = dump_recording(rec)
    assert load_recording(data).bridged_only is True
    del data["bridged_only"]
    assert load_recording(data).bridged_only is True
    data["options"] = "D"
    assert load_recording(data).bridged_only is False


# -- live and caught up read a file the same way --------------------------------------------


def _config() -> Config:
    return lab_config()


def _live(file: str, options: str) -> AudioPlan:
    closed: list[Recording] = []
    tracker = CallTracker(closed.append)

    def ev(name: str, t: float, uid: str, chan: str, **fields: Any) -> None:
        tracker.feed({"Event": name, "Timestamp": f"{T0 + t:.6f}", "Uniqueid": uid,
                      "Channel": chan, "Linkedid": "1.1", **fields}, T0 + t)

    trunk, phone = "PJSIP/trunk-00000001", "PJSIP/1001-00000002"
    ev("Newchannel", 0, "1.1", trunk, Context="from-pstn", Exten="0312345678",
       CallerIDNum="0312349999", ChannelStateDesc="Ring")
    appdata = f"{file},{options}" if options else file
    ev("Newexten", 0.1, "1.1", trunk, Application="MixMonitor", AppData=appdata,
       Context="from-pstn", Exten="0312345678", Priority="2")
    ev("Newchannel", 0.2, "1.2", phone, Context="from-internal", Exten="s",
       CallerIDNum="1001", ChannelStateDesc="Ring")
    ev("DialBegin", 0.2, "1.1", trunk, DestUniqueid="1.2", DestChannel=phone,
       DialString="PJSIP/1001")
    ev("DialEnd", 0.3, "1.1", trunk, DestUniqueid="1.2", DialStatus="ANSWER")
    ev("BridgeEnter", 1, "1.2", phone, BridgeUniqueid="b1")
    ev("BridgeEnter", 1, "1.1", trunk, BridgeUniqueid="b1")
    ev("Hangup", 9, "1.1", trunk)
    ev("Hangup", 9, "1.2", phone)
    [rec] = closed
    config = _config()
    return classify(rec, Context(config, "lab", config.pbx.tz())).audio


def _caught_up(file: str) -> AudioPlan:
    """The same call from its CDR row, FreePBX naming the file in recordingfile."""
    config = _config()
    row = CdrRow(start=T0, answer=T0 + 1, end=T0 + 9, src="0312349999", dst="0312345678",
                 dcontext="from-pstn", channel="PJSIP/trunk-00000001",
                 dstchannel="PJSIP/1001-00000002", lastapp="Dial", lastdata="PJSIP/1001,,t",
                 disposition="ANSWERED", uniqueid="1.1", linkedid="1.1", recordingfile=file)
    ctx = BuildContext(config=config, files=FileIndex(), monitor_dir="/rec",
                       exists=lambda p: True)
    [item] = CallBuilder([row], ctx).recordings()
    assert item.rec is not None, item.problem
    return classify(item.rec, Context(config, "lab", config.pbx.tz())).audio


@pytest.mark.parametrize("ext", [".wav", ".WAV", ".gsm", ".sln", ".ulaw", ".alaw", ".ogg",
                                 ".m4a", ".mp3", ".raw", ".sln16"])
def test_live_and_catch_up_plan_a_files_audio_alike(ext: str) -> None:
    """A MixMonitor file whose options say nothing of its layout: live
    tracking and catch-up used two extension lists (catch-up planned a .sln,
    .ulaw or .alaw file as of unknown layout, live an .ogg or .m4a), so the
    outbox row and the upload's mono-mix decision depended on who saw the call."""
    file = f"/rec/call-1.1{ext}"
    live, caught = _live(file, ""), _caught_up(file)
    assert (caught.mode, caught.channel_type) == (live.mode, live.channel_type)
    assert caught.mode == recording_mode(file)


def test_catch_up_passes_the_b_option_as_a_value() -> None:
    """An unanswered FreePBX recording is empty with b: skipped, not sent as audio.
    Catch-up says so from [catchup] freepbx_rec_options, not a made-up option string."""
    config = _config()
    row = CdrRow(start=T0, end=T0 + 9, src="0312349999", dst="0312345678",
                 dcontext="from-pstn", channel="PJSIP/trunk-00000001",
                 dstchannel="PJSIP/1001-00000002", lastapp="Dial", lastdata="PJSIP/1001,,t",
                 disposition="NO ANSWER", uniqueid="1.1", linkedid="1.1",
                 recordingfile="2026/11/23/in-0312345678-0312349999-20261123-090000-1.1.wav")
    for options, empty in (("ab", True), ("a", False)):
        ctx = BuildContext(config=config, files=FileIndex(), monitor_dir="/rec",
                           freepbx_options=options, exists=lambda p: True)
        [item] = CallBuilder([row], ctx).recordings()
        assert item.rec is not None and item.rec.options == ""
        assert item.rec.bridged_only is empty
        o = classify(item.rec, Context(config, "lab", config.pbx.tz()))
        assert o.skip is not None
        assert ("b option recorded nothing" in o.skip) is empty, o.skip

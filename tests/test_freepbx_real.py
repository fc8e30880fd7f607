"""Issue 14: dialplans real FreePBX systems generated, on the real Asterisk lab.

The `freepbx-real` lab flavour (tests/lab/freepbx_real.py) loads
../shared/freepbx/generated/ unchanged except for the Macro -> Gosub step
FreePBX 17 makes on Asterisk 21+. These tests read those files from
../shared; under CI=true a missing file fails, elsewhere the tests skip.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import (
    E2E,
    answer_at,
    bye_at,
    check_file,
    check_length,
    check_sides,
    check_times,
    invite_at,
    near,
    outside,
    refer_at,
    when,
)
from tests.lab import Lab, freepbx_real
from tests.lab.analysis import bridged_seconds, hangup_time
from tests.lab.audio import analyse
from tests.lab.freepbx_real import VARIANTS, macro_to_gosub
from tests.lab.scenarios import ASTERISK, CUSTOMER
from tests.support import HANAKO, JIRO, TARO

DIALPLANS = sorted(VARIANTS)


@pytest.fixture(scope="module", autouse=True)
def _shared_files() -> None:
    missing = freepbx_real.missing_files()
    if missing:
        if freepbx_real.ci():
            pytest.fail(f"CI=true but FreePBX's generated dialplans are missing: {missing}")
        pytest.skip(f"FreePBX's generated dialplans are not here: {missing}")


# -- the one mechanical step ---------------------------------------------------------------

def test_macro_calls_become_gosubs_into_the_macro_context() -> None:
    text = "[ext-local]\nexten => 1101,n,Macro(exten-vm,1101,1101,0,0,0)\n"
    assert macro_to_gosub(text) == (
        "[ext-local]\nexten => 1101,n,Gosub(macro-exten-vm,s,1(1101,1101,0,0,0))\n")
    assert "Gosub(macro-user-callerid,s,1())" in macro_to_gosub(
        "[x]\nexten => s,1,Macro(user-callerid,)\n")
    assert "Gosub(macro-hangupcall,s,1())" in macro_to_gosub(
        "[x]\nexten => h,1,Macro(hangupcall)\n")


def test_macro_inside_execif_and_nested_expressions() -> None:
    line = ('exten => s,n,ExecIf($["${QCIDPP}"!=""]?Macro(prepend-cid,${IF($[${LEN(x)}>0]?a:b)}))')
    out = macro_to_gosub(f"[ext-queues]\n{line}\n")
    assert out.splitlines()[1] == (
        'exten => s,n,ExecIf($["${QCIDPP}"!=""]?'
        'Gosub(macro-prepend-cid,s,1(${IF($[${LEN(x)}>0]?a:b)})))')


def test_macroexit_returns_and_keeps_gosub_retval_when_just_set() -> None:
    text = ("[macro-blkvm-check]\n"
            "exten => s,1,Set(GOSUB_RETVAL=${SHARED(BLKVM,${BLKVM_CHANNEL})})\n"
            "exten => s,n,MacroExit()\n"
            "[macro-exten-vm]\n"
            "exten => s,1,ExecIf($[1]?MacroExit())\n"
            "exten => s,n,Hangup\n")
    lines = macro_to_gosub(text).splitlines()
    assert lines[2] == "exten => s,n,Return(${GOSUB_RETVAL})"
    assert lines[4] == "exten => s,1,ExecIf($[1]?Return())"
    assert "MacroExit" not in "\n".join(lines)


def test_a_macro_that_ran_out_of_priorities_returns() -> None:
    text = ("[macro-auto-blkvm]\n"
            "exten => s,1,Set(__MACRO_RESULT=)\n"
            "exten => s,n,Set(CFIGNORE=)\n"
            "\n"
            "exten => h,1,Hangup\n"
            "[ext-local]\n"
            "exten => 1101,1,Set(x=1)\n")
    lines = macro_to_gosub(text).splitlines()
    # a Return after the last priority of s; h ends in Hangup; ext-local is no macro
    assert lines[3] == "exten => s,n,Return()"
    assert lines.count("exten => s,n,Return()") == 1
    assert lines[-1] == "exten => 1101,1,Set(x=1)"


def test_dial_m_option_and_macro_variables() -> None:
    text = ("[macro-dial-one]\n"
            "exten => s,n,Set(D_OPTIONS=${ARG2}M(auto-blkvm))\n"
            "exten => s,n,Set(x=${MACRO_EXTEN}${MACRO_CONTEXT}${MACRO_PRIORITY})\n"
            'exten => s,n,GotoIf($["${MACRO_DEPTH}" = "" | ${MACRO_DEPTH} < 6 ]?a:b)\n'
            'exten => s,n,ExecIf($["${REGEX("(M[(]auto-blkvm[)])" ${D})}" != "1"]?Set(y=1))\n'
            "exten => s,n,Return()\n")
    lines = macro_to_gosub(text).splitlines()
    assert lines[1] == "exten => s,n,Set(D_OPTIONS=${ARG2}U(macro-auto-blkvm))"
    assert lines[2] == ("exten => s,n,Set(x=${STACK_PEEK(1,e,1)}${STACK_PEEK(1,c,1)}"
                        "${STACK_PEEK(1,p,1)})")
    assert lines[3] == 'exten => s,n,GotoIf($["0" = "" | 0 < 6 ]?a:b)'
    assert "M[(]auto-blkvm" in lines[4]  # a regular expression, not a Dial option


def test_comments_and_hints_are_untouched() -> None:
    text = ("; Macro(foo) in a comment stays\n"
            "[macro-x]\n"
            "exten => s,1,Noop(x) ; Macro(bar) after code stays\n"
            "exten => 1101,hint,PJSIP/1101\n")
    out = macro_to_gosub(text)
    assert out.splitlines()[0] == "; Macro(foo) in a comment stays"
    assert "; Macro(bar) after code stays" in out
    assert "exten => 1101,hint,PJSIP/1101" in out


@pytest.mark.parametrize("name", DIALPLANS)
def test_generated_dialplans_convert_completely(name: str) -> None:
    variant = VARIANTS[name]
    for path in (variant.additional, variant.static):
        original = path.read_text(encoding="utf-8")
        out = macro_to_gosub(original)
        code = "\n".join(line.split(";", 1)[0] for line in out.splitlines())
        assert not re.search(r"(?<![A-Za-z0-9_])Macro(Exit)?\(", code), path.name
        assert "${MACRO_DEPTH}" not in code
        # nothing but priority lines changed: same contexts, same comments
        assert list(freepbx_real.contexts(out)) == list(freepbx_real.contexts(original))
        assert ([x for x in original.splitlines() if x.lstrip().startswith(";")]
                == [x for x in out.splitlines() if x.lstrip().startswith(";")])
        assert original.count("Macro(") == out.count("Gosub(macro-") - original.count(
            "Gosub(macro-")


def test_astdb_is_what_freepbx_writes_for_a_pjsip_extension() -> None:
    db = freepbx_real.astdb(VARIANTS["freepbx16-ast18-a"])
    assert db["AMPUSER/1101/device"] == "1101"
    assert db["DEVICE/1101/dial"] == "PJSIP/1101"
    assert db["DEVICE/1101/user"] == "1101"
    assert db["AMPUSER/1101/voicemail"] == "default"
    assert db["AMPUSER/1066/voicemail"] == "novm"
    assert db["AMPUSER/1180/recording/in/external"] == "force"
    assert db["RINGGROUP/1111/changecid"] == "default"
    assert db["QPENALTY/1301/agents/1180"] == "0"


# -- real calls on the real FreePBX dialplan -------------------------------------------------

NAME, NUMBER = CUSTOMER
MIITEL_IDS = (TARO, HANAKO, JIRO)


def users_of(variant: freepbx_real.Variant) -> dict[str, dict[str, Any]]:
    """The [users] an admin writes for this PBX: each phone's extension."""
    return {p.extension: {"miitel_user_id": uid, "name": p.name}
            for p, uid in zip(variant.phones, MIITEL_IDS, strict=True)}


def fuser(variant: freepbx_real.Variant, ext: str, kind: str, side: str) -> dict[str, Any]:
    u = users_of(variant)[ext]
    return {"type": kind, "stereo_lr": side, "miitel_user_id": u["miitel_user_id"],
            "number": ext, "name": u["name"]}


@pytest.fixture(params=DIALPLANS)
def real(request: pytest.FixtureRequest, lab: Lab, tmp_path: Path) -> Iterator[E2E]:
    """The lab on one generated FreePBX dialplan, the service running against it."""
    name = request.param
    lab.use_flavour("freepbx-real", dialplan=name)
    try:
        with E2E(lab, tmp_path, users=users_of(VARIANTS[name])) as env:
            yield env
    finally:
        lab.wait_idle()
        lab.use_flavour("plain")


def variant_of(env: E2E) -> freepbx_real.Variant:
    assert env.lab.freepbx_dialplan is not None
    return VARIANTS[env.lab.freepbx_dialplan]


def ip(env: E2E, index: int) -> str:
    return variant_of(env).phones[index].ip


def ext(env: E2E, index: int) -> str:
    return variant_of(env).phones[index].extension


def finish(env: E2E) -> None:
    """What E2E.play does after a scenario: every sipp ok, the lab idle."""
    env.runner.wait_all()
    failed = {role: r.summary() for role, r in env.runner.results.items() if not r.ok}
    assert not failed, f"sipp failed: {failed}"
    env.lab.wait_idle(timeout=30)


def check_legs(env: E2E, call: dict[str, Any], talker: str) -> None:
    """FreePBX's own mono WAV, written with the legs our hook gave its MixMonitor:
    MiiTel gets stereo, the talker's side carries the audio, as long as the bridge."""
    data = call["call_data"]
    rec = env.recording_for(call)
    assert rec.mode == "legs" and rec.receive and rec.transmit
    assert analyse(rec.file).channels == 1
    assert data["audio_channel_type"] == "STEREO"
    info = check_file(call)
    check_sides(info, data, talker, min_active=2.0)
    # bridged until the hangup: the MixMonitorStop of our restart (before the
    # bridge) is not the end of this recording
    events = env.events()
    check_length(info, bridged_seconds(events, rec.uniqueid, since=rec.started,
                                       until=hangup_time(events, rec.uniqueid)))


# b15 was published without its inbound routes (ext-did-0001/0002 are missing):
# a call from the trunk there ends in the catch-all's "no service" message.
A16_ONLY = pytest.mark.parametrize("real", ["freepbx16-ast18-a"], indirect=True)


@pytest.mark.lab
@A16_ONLY
def test_freepbx_real_inbound_did_to_extension(real: E2E) -> None:
    # a16's inbound routes: an unknown DID reaches the catch-all, then 1180
    env, v = real, variant_of(real)
    env.runner.start("callee", "uas_answer", ip=ip(env, 1))
    caller = env.runner.run("caller", "uac_talk", ip=freepbx_real.TRUNK_IP,
                            service="0312345678", inf=[list(CUSTOMER)], duration_ms=4000)
    finish(env)
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    fuser(v, "1180", "TO", "right")]
    assert data["circuit_number"] == "0312345678"  # FROM_DID, set by the catch-all route
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    rec = env.recording_for(call)
    # FreePBX's own file, restarted with legs at the extension's predial hook
    assert Path(rec.file).name.startswith("external-1180-0312349999-")
    assert env.variable("MIITEL_RECORD_FILE") == [rec.file]
    check_legs(env, call, "FROM")


@pytest.mark.lab
def test_freepbx_real_extension_to_extension(real: E2E) -> None:
    env, v = real, variant_of(real)
    a, b = ext(env, 0), ext(env, 1)
    env.runner.start("callee", "uas_answer", ip=ip(env, 1))
    caller = env.runner.run("caller", "uac_talk", ip=ip(env, 0), service=b,
                            inf=[[v.phones[0].name, a]], duration_ms=4000)
    finish(env)
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "EXTENSION"
    assert data["participants"] == [fuser(v, a, "FROM", "left"), fuser(v, b, "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    rec = env.recording_for(call)
    assert Path(rec.file).name.startswith(f"internal-{b}-{a}-")
    check_legs(env, call, "FROM")


# -- the service follows our hook's restart of FreePBX's MixMonitor -------------------------

def _restart_events(restart_header: bool) -> list[dict[str, str]]:
    """FreePBX's MixMonitor on the trunk channel, restarted with legs by our predial
    hook (the order the lab's AMI showed on the real a16 dialplan), then the call."""
    f = "/var/spool/asterisk/monitor/2026/12/01/external-1180-0312349999-x-1.0.wav"
    rx, tx = "/var/spool/asterisk/monitor/miitel/m-1-in.wav", "/var/spool/asterisk/monitor/miitel/m-1-out.wav"
    trunk = {"Uniqueid": "1.0", "Channel": "PJSIP/trunk-00000000", "Linkedid": "1.0"}
    phone = {"Uniqueid": "1.1", "Channel": "PJSIP/1180-00000001", "Linkedid": "1.0"}
    said = {"Event": "UserEvent", "UserEvent": "MiiTelRecording", **trunk, "File": f,
            "Mode": "legs", "Receive": rx, "Transmit": tx}
    if restart_header:
        said["Restart"] = "yes"
    check = {"Context": "sub-record-check", "Exten": "recordcheck", "Priority": "27"}

    def step(prio: str) -> dict[str, str]:
        return {"Context": "miitel-freepbx-restart", "Exten": "s", "Priority": prio}

    dial = {"Context": "macro-dial-one", "Exten": "s", "Priority": "58"}
    return [
        {"Event": "Newchannel", **trunk, "CallerIDNum": "0312349999", "Exten": "0312345678",
         "Context": "from-trunk-pjsip-yay.com"},
        {"Event": "Newexten", **trunk, **check, "Extension": "recordcheck",
         "Application": "MixMonitor",
         "AppData": "2026/12/01/external-1180-0312349999-x-1.0.wav,abi(),"},
        {"Event": "VarSet", **trunk, **check, "Variable": "MIXMONITOR_FILENAME", "Value": f},
        {"Event": "MixMonitorStart", **trunk, **check},
        {**said, **step("7")},
        {"Event": "Newexten", **trunk, **step("8"), "Extension": "s",
         "Application": "StopMixMonitor", "AppData": ""},
        {"Event": "MixMonitorStop", **trunk, **step("8")},
        {"Event": "Newexten", **trunk, **step("9"), "Extension": "s",
         "Application": "MixMonitor", "AppData": f"{f},abi(MIITEL_MIXMON_ID)r({rx})t({tx}),"},
        {"Event": "VarSet", **trunk, **step("9"), "Variable": "MIXMONITOR_FILENAME",
         "Value": f},
        {"Event": "MixMonitorStart", **trunk, **step("9")},
        {"Event": "DialBegin", **trunk, **dial, "DestUniqueid": "1.1",
         "DestChannel": "PJSIP/1180-00000001"},
        {"Event": "Newchannel", **phone, "CallerIDNum": "1180", "Exten": "s",
         "Context": "from-internal"},
        {"Event": "DialEnd", **trunk, "DestUniqueid": "1.1", "DialStatus": "ANSWER"},
        {"Event": "BridgeEnter", **phone, "BridgeUniqueid": "b1"},
        {"Event": "BridgeEnter", **trunk, "BridgeUniqueid": "b1"},
        {"Event": "BridgeLeave", **trunk, "BridgeUniqueid": "b1"},
        {"Event": "BridgeLeave", **phone, "BridgeUniqueid": "b1"},
        {"Event": "Hangup", **phone},
        {"Event": "Hangup", **trunk},
    ]


@pytest.mark.parametrize("restart_header", [True, False])
def test_freepbx_real_restarted_mixmonitor_is_one_recording(restart_header: bool) -> None:
    from asterisk_miitel.calls.tracker import CallTracker

    closed: list[Any] = []
    tracker = CallTracker(closed.append)
    for i, event in enumerate(_restart_events(restart_header)):
        tracker.feed(event, 1796162039.0 + i)
    if not restart_header:
        # without the hook's word the stop ends the recording before the answer:
        # the restarted MixMonitor on the same file cannot become a second call
        assert [r.end_reason for r in closed][:1] == ["stopped"]
        return
    [rec] = closed
    assert rec.end_reason == "hangup" and rec.mode == "legs"
    assert rec.receive.endswith("m-1-in.wav") and rec.transmit.endswith("m-1-out.wav")
    assert [p.uniqueid for p in rec.seen] == ["1.0", "1.1"]


@pytest.mark.lab
def test_freepbx_real_queue_member_recording_is_stereo(real: E2E) -> None:
    # a16: 1101 calls queue 1301 (members 1101, 1180); b15: 101 calls queue 201
    # (members 101-103). The queue's own policy (dontcare / never) records nothing on
    # the caller; each member's extension policy (force) records its Local/<ext>@
    # from-queue;2 channel: FreePBX's file, restarted with legs at its predial hook.
    env, v = real, variant_of(real)
    a, b = ext(env, 0), ext(env, 1)
    queue = {"freepbx16-ast18-a": "1301", "freepbx15-ast16-b": "201"}[v.name]
    members = {"freepbx16-ast18-a": ("1101", "1180"),
               "freepbx15-ast16-b": ("101", "102", "103")}[v.name]
    for p in v.phones:
        if p.extension in members:
            env.runner.start(f"member {p.extension}",
                             "uas_answer" if p.extension == b else "uas_noanswer", ip=p.ip)
    caller = env.runner.run("caller", "uac_talk", ip=ip(env, 0), service=queue,
                            inf=[[v.phones[0].name, a]], duration_ms=4000)
    finish(env)
    # the members that rang and were cancelled leave empty recordings: skipped
    [call] = env.sent(1, skipped=len(members) - 1)
    data = call["call_data"]
    assert data["queue_name"] == queue
    assert data["event_type"] == "EXTENSION"
    # the member's Local half: LEFT is what comes from it, the caller; RIGHT the member
    assert data["participants"] == [fuser(v, a, "FROM", "left"), fuser(v, b, "TO", "right")]
    check_times(data, start=invite_at(caller),
                answer=answer_at(env.runner.results[f"member {b}"]), end=bye_at(caller))
    rec = env.recording_for(call)
    assert rec.channel.startswith(f"Local/{b}@from-queue-")
    assert Path(rec.file).name.startswith(f"internal-{b}-{a}-")
    check_legs(env, call, "FROM")


@pytest.mark.lab
def test_freepbx_real_ring_group_records_nothing_by_its_policy(real: E2E) -> None:
    # a16: 1101 -> ring group 1111 (member 1066); b15: 101 -> 8888 (102-103). The
    # generated groups have recording "dontcare" and a group member's leg gets no
    # extension check: FreePBX records nothing, so MiiTel gets nothing. The phones
    # still ring through dialparties (our FastAGI stand-in) and our ringall hook
    # announces the group.
    env, v = real, variant_of(real)
    group, answers = {"freepbx16-ast18-a": ("1111", "1066"),
                      "freepbx15-ast16-b": ("8888", "103")}[v.name]
    for p in v.phones[1:]:
        if p.extension not in v.groups[group]:
            continue
        env.runner.start(f"member {p.extension}",
                         "uas_answer" if p.extension == answers else "uas_noanswer", ip=p.ip)
    env.runner.run("caller", "uac_talk", ip=ip(env, 0), service=group,
                   inf=[[v.phones[0].name, ext(env, 0)]], duration_ms=3000)
    finish(env)
    assert "dialparties.agi" in env.lab.fastagi.scripts()  # type: ignore[union-attr]
    events = env.events()
    assert [m.get("DialStatus") for m in events if m.event == "DialEnd"
            and m.get("DestChannel", "").startswith(f"PJSIP/{answers}-")] == ["ANSWER"]
    assert [m.get("Group") for m in events if m.get("UserEvent") == "MiiTelGroup"] == [group]
    assert not [m for m in events if m.event == "MixMonitorStart"]
    time.sleep(2.0)
    assert env.standin.calls() == [] and env.outbox() == []
    env.check_log()


@pytest.mark.lab
@A16_ONLY
def test_freepbx_real_unanswered_call_reaches_voicemail(real: E2E) -> None:
    # the customer -> 1180, which rings 3 s (AMPUSER/1180/ringtimer) -> macro-vm ->
    # VoiceMail(1180@default,u): MiiTel gets the message
    env, v = real, variant_of(real)
    env.runner.start("callee", "uas_noanswer", ip=ip(env, 1))
    caller = env.runner.run("caller", "uac_voicemail", ip=freepbx_real.TRUNK_IP,
                            service="0312345678", inf=[list(CUSTOMER)], duration_ms=14000)
    finish(env)
    [call] = env.sent(1, skipped=1)
    data = call["call_data"]
    assert data["event_type"] == "AUTOMATIC_RECORD"
    assert data["audio_channel_type"] == "MONAURAL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    fuser(v, "1180", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=None, end=bye_at(caller))
    [message] = env.variable("VM_MESSAGEFILE")
    assert Path(call["file"]).read_bytes() == Path(message + ".wav").read_bytes()
    info = check_file(call)
    assert info.channels == 1 and info.left.active_seconds >= 5.0
    # FreePBX's recording of the unanswered Dial (restarted with legs, option b): empty
    [rec] = env.recordings()
    assert Path(rec.file).name.startswith("external-1180-")
    [skipped] = [r for r in env.outbox() if r.file == rec.file]
    assert (skipped.state, skipped.posts) == ("skipped", 0)


@pytest.mark.lab
@A16_ONLY
def test_freepbx_real_blind_transfer(real: E2E) -> None:
    # the customer -> 1180, which answers and after 3 s REFERs to 1101; FreePBX runs
    # the customer's channel in from-internal-xfer (TRANSFER_CONTEXT) and records 1101
    env, v = real, variant_of(real)
    env.runner.start("target", "uas_answer", ip=ip(env, 0))
    env.runner.start("transferer", "uas_refer_bye", ip=ip(env, 1),
                     inf=[["1101", ASTERISK]])
    caller = env.runner.run("caller", "uac_talk", ip=freepbx_real.TRUNK_IP,
                            service="0312345678", inf=[list(CUSTOMER)], duration_ms=12000)
    finish(env)
    transferer, target = env.runner.results["transferer"], env.runner.results["target"]
    first, second = env.sent(2, skipped=1)
    # FreePBX's first recording (the customer's channel, force) runs on after the
    # transfer; FreePBX starts a second one for 1101 on the same channel. The first
    # is sent up to the transfer, the rest of it is the second's conversation.
    data = first["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    fuser(v, "1180", "TO", "right")]
    near(data["call_starts_at"], invite_at(caller))
    near(data["call_answered_at"], answer_at(transferer))
    # ends at the transfer: FreePBX's dialplan runs for it first (up to a second)
    assert abs(when(data["call_ends_at"]) - refer_at(transferer)) < 1.5
    assert Path(env.recording_for(first).file).name.startswith("external-1180-")
    check_sides(check_file(first), data, "FROM", min_active=2.0)
    data = second["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    assert data["participants"] == [fuser(v, "1180", "FROM", "left"),
                                    fuser(v, "1101", "TO", "right")]
    check_times(data, start=refer_at(transferer), answer=answer_at(target), end=bye_at(caller))
    rec = env.recording_for(second)
    assert Path(rec.file).name.startswith("external-1101-") and rec.mode == "legs"
    assert rec.uniqueid == env.recording_for(first).uniqueid  # both on the customer's channel
    info = check_file(second)
    check_sides(info, data, "FROM", min_active=6.0)
    events = env.events()
    check_length(info, bridged_seconds(events, rec.uniqueid, since=rec.started,
                                       until=hangup_time(events, rec.uniqueid)))


@pytest.mark.lab
@A16_ONLY
# Seen once in a full run: the consultation INVITE never reached 1101 (sipp timed
# out after 60 s). Most likely the * and the 2 of *2 (one SIP INFO each) reached
# Asterisk more than featuredigittimeout (its default 1000 ms) apart under load,
# so * went through as DTMF: a 1.5 s gap gives exactly that every time. The lab
# now allows 3000 ms (conf/features.conf, freepbx_real.FEATURES): no rerun.
def test_freepbx_real_attended_transfer(real: E2E) -> None:
    # the customer -> 1180, which answers, dials *2 1101 (SIP INFO), consults 1101 and
    # hangs up; FreePBX 17's transfer monitor (here over the admin AMI) reacts
    env, v = real, variant_of(real)
    env.runner.start("target", "uas_answer", ip=ip(env, 0))
    env.runner.start("transferer", "uas_atxfer_to", ip=ip(env, 1), inf=[["1", "1", "0", "1"]])
    with freepbx_real.TransferMonitor(env.lab) as monitor:
        caller = env.runner.run("caller", "uac_talk", ip=freepbx_real.TRUNK_IP,
                                service="0312345678", inf=[list(CUSTOMER)],
                                duration_ms=16000)
        finish(env)
    transferer = env.runner.results["transferer"]
    # three conversations: the customer with 1180, 1180 consulting 1101 (FreePBX
    # records 1101's Local half: force), the customer with 1101 after the transfer
    before, consult, after = env.sent(3, skipped=1)  # by start
    assert monitor.actions == [{"orig": monitor.actions[0]["orig"],
                                "transferee": monitor.actions[0]["transferee"], "file": ""}]
    # 1180's own channel records nothing (the customer's channel does): FreePBX's
    # transfer monitor finds no MIXMONITOR_FILENAME there and appends nothing
    assert monitor.actions[0]["orig"].startswith("PJSIP/1180-")
    data = before["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    fuser(v, "1180", "TO", "right")]
    near(data["call_starts_at"], invite_at(caller))
    near(data["call_answered_at"], answer_at(transferer))
    check_sides(check_file(before), data, "FROM", min_active=2.0)
    data = consult["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    assert data["participants"] == [fuser(v, "1180", "FROM", "left"),
                                    fuser(v, "1101", "TO", "right")]
    rec = env.recording_for(consult)
    assert rec.channel.startswith("Local/1101@from-internal-xfer-") and rec.mode == "legs"
    assert check_file(consult).channels == 2
    data = after["call_data"]
    assert data["event_type"] == "EXTENSION_TRANSFER"
    assert data["participants"] == [fuser(v, "1180", "FROM", "left"),
                                    fuser(v, "1101", "TO", "right")]
    assert data["call_ends_at"] >= before["call_data"]["call_ends_at"]
    # ends with the call (the target's hangup follows the customer's BYE)
    assert abs(when(data["call_ends_at"]) - bye_at(caller)) < 1.5
    assert env.recording_for(after).file == env.recording_for(before).file
    check_sides(check_file(after), data, "FROM", min_active=3.0)


# -- FreePBX 16's dialplan unchanged (Macro) on the Asterisk 18 it was generated for ---------

@pytest.fixture
def real18(asterisk_lab: Lab, tmp_path: Path) -> Iterator[E2E]:
    asterisk_lab.use_flavour("freepbx-real", dialplan="freepbx16-ast18-a")
    try:
        with E2E(asterisk_lab, tmp_path,
                 users=users_of(VARIANTS["freepbx16-ast18-a"])) as env:
            yield env
    finally:
        asterisk_lab.wait_idle()
        asterisk_lab.use_flavour("plain")


@pytest.mark.lab
@pytest.mark.parametrize("asterisk_lab", ["18"], indirect=True, ids=["ast18"])
def test_freepbx_real_ast18_inbound_did_to_extension_with_app_macro(real18: E2E) -> None:
    # a16's extensions_additional.conf as FreePBX wrote it (Macro, MacroExit): our
    # hooks run as Macros and leave with MacroExit()
    env, v = real18, variant_of(real18)
    assert env.lab.built and env.lab.asterisk == "18"
    env.runner.start("callee", "uas_answer", ip=ip(env, 1))
    caller = env.runner.run("caller", "uac_talk", ip=freepbx_real.TRUNK_IP,
                            service="0312345678", inf=[list(CUSTOMER)], duration_ms=4000)
    finish(env)
    assert any(m.event == "Newexten" and m.get("Application") == "Macro"
               for m in env.events()) or "Macro(" in (
        env.lab.etc_dir / "extensions_additional.conf").read_text()
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "INCOMING_CALL"
    assert data["participants"] == [outside(NUMBER, "FROM", "left", NAME),
                                    fuser(v, "1180", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    assert Path(env.recording_for(call).file).name.startswith("external-1180-0312349999-")
    check_legs(env, call, "FROM")


@pytest.mark.lab
@pytest.mark.parametrize("asterisk_lab", ["18"], indirect=True, ids=["ast18"])
def test_freepbx_real_ast18_extension_to_extension_with_app_macro(real18: E2E) -> None:
    env, v = real18, variant_of(real18)
    env.runner.start("callee", "uas_answer", ip=ip(env, 1))
    caller = env.runner.run("caller", "uac_talk", ip=ip(env, 0), service="1180",
                            inf=[[v.phones[0].name, "1101"]], duration_ms=4000)
    finish(env)
    [call] = env.sent(1)
    data = call["call_data"]
    assert data["event_type"] == "EXTENSION"
    assert data["participants"] == [fuser(v, "1101", "FROM", "left"),
                                    fuser(v, "1180", "TO", "right")]
    check_times(data, start=invite_at(caller), answer=answer_at(caller), end=bye_at(caller))
    assert Path(env.recording_for(call).file).name.startswith("internal-1180-1101-")
    check_legs(env, call, "FROM")

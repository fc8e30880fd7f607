"""Issue 14: dialplans real FreePBX systems generated, on the real Asterisk lab.

The `freepbx-real` lab flavour (tests/lab/freepbx_real.py) loads
../shared/freepbx/generated/ unchanged except for the Macro -> Gosub step
FreePBX 17 makes on Asterisk 21+. These tests read those files from
../shared; under CI=true a missing file fails, elsewhere the tests skip.
"""

from __future__ import annotations

import re

import pytest

from tests.lab import freepbx_real
from tests.lab.freepbx_real import VARIANTS, macro_to_gosub

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
    assert db["AMPUSER/1180/recording/in/external"] == "dontcare"
    assert db["RINGGROUP/1111/changecid"] == "default"
    assert db["QPENALTY/1301/agents/1180"] == "0"

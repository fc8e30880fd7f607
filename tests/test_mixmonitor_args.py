"""What a MixMonitor step's AppData says: options with and without arguments."""

import pytest

from asterisk_miitel.calls.mixmonitor import option_arg, option_letters, parse_mixmonitor


@pytest.mark.parametrize(
    ("appdata", "receive", "transmit", "id_var", "appends"),
    [
        ("/rec/a.wav,b", None, None, None, False),
        ("/rec/a.wav,ab", None, None, None, True),
        ("/rec/a.wav,", None, None, None, False),
        ("/rec/a.wav", None, None, None, False),
        ("/rec/a.wav,bi(MID)", None, None, "MID", False),
        ("/rec/a.wav,br(/rec/in.wav)t(/rec/out.wav)", "/rec/in.wav", "/rec/out.wav", None, False),
        # letters inside an argument are not options
        ("/rec/a.wav,br(/tmp/a/b.wav)", "/tmp/a/b.wav", None, None, False),
        ("/rec/a.wav,r", None, None, None, False),  # r without a file: nothing to follow
        ("/rec/a.wav,bD", None, None, None, False),
    ],
)
def test_mixmonitor_options(
    appdata: str, receive: str | None, transmit: str | None, id_var: str | None, appends: bool
) -> None:
    args = parse_mixmonitor(appdata)
    assert args.file == "/rec/a.wav"
    assert (args.receive, args.transmit, args.id_var, args.appends) == (
        receive, transmit, id_var, appends)


def test_option_letters_and_arguments() -> None:
    assert option_letters("bD") == "bD"
    assert option_letters("bDi(ID)r(/x/a(1).wav)") == "bDir"
    assert option_arg("bD", "D") == ""
    assert option_arg("bD", "r") is None
    assert option_arg("bi(ID)", "i") == "ID"
    assert option_arg("br(/rec/bad/i.wav)", "i") is None  # the i is in r's argument

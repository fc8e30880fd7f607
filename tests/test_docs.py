"""The README's configuration reference is a config the service accepts."""

from __future__ import annotations

from pathlib import Path

from asterisk_miitel.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_block_loads(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("```toml\n[ami]") + len("```toml\n")
    block = text[start : text.index("```", start)]
    # The placeholders a user fills in.
    block = block.replace('"https://<company>.miitel.jp/..."', '"https://acme.miitel.jp/hook/abc"')
    block = block.replace('miitel_user_id = "..."',
                          'miitel_user_id = "5d7c3e1a-2b4f-4c6d-8e9f-0a1b2c3d4e5f"')
    path = tmp_path / "config.toml"
    path.write_text(block, encoding="utf-8")
    config = load_config(path)
    assert config.ami.username == "miitel"
    assert config.users["1002"].endpoints == ["desk-sato"]
    assert config.pbx.id is None and config.catchup.database_url is None  # "" means unset


def test_how_it_works_names_modules_that_exist() -> None:
    # The diagram is where a newcomer starts reading: every module and package
    # it names must be there, and the data-flow stages must all be named.
    import re

    text = README.read_text(encoding="utf-8")
    start = text.index("## How it works")
    block = text[start : text.index("```\n", text.index("```", start) + 3)]
    package = README.parent / "asterisk_miitel"
    named = set(re.findall(r"\b([a-z_]+(?:/[a-z_]+)*(?:\.py|/))", block))
    assert named, "the diagram names no module"
    missing = sorted(n for n in named if not (package / n).exists())
    assert not missing, f"the diagram names modules that do not exist: {missing}"
    for stage in ("ami/listener.py", "calls/tracker.py", "calls/classify.py", "intake.py",
                  "outbox/store.py", "outbox/sender.py", "miitel/client.py", "resync.py",
                  "calls/restore.py"):
        assert stage in named, f"the diagram does not name {stage}"

"""Helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path

from asterisk_miitel.config import Config

FIXTURES = Path(__file__).parent / "fixtures"
TARO = "9b1d82f5-9845-4158-9c7b-75e7c235d8e7"
HANAKO = "5d7c3e1a-2b4f-4c6d-8e9f-0a1b2c3d4e5f"
JIRO = "0f1e2d3c-4b5a-4968-8776-655443322110"


def lab_config(**over: object) -> Config:
    """The config the lab PBX's transcripts are read with."""
    base: dict[str, object] = {
        "users": {
            "1001": {"miitel_user_id": TARO, "name": "Taro Yamada"},
            "1002": {"miitel_user_id": HANAKO, "name": "Hanako Sato"},
            "1003": {"miitel_user_id": JIRO, "name": "Jiro Suzuki"},
        },
        "numbers": {"outside_line_prefix": "0"},
        "pbx": {"id": "lab", "timezone": "Asia/Tokyo"},
    }
    base.update(over)
    return Config(**base)  # type: ignore[arg-type]

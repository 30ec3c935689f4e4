"""docs/events.md documents exactly the fields the code writes, and the schema version it states is the code's."""

from __future__ import annotations

import re
from pathlib import Path

from ser_live.batch.store import BASE_WINDOW_COLUMNS, PARQUET_SCHEMA_KEY
from ser_live.realtime.events import EVENT_SCHEMA, SessionSummary, WindowEvent

DOC = Path(__file__).resolve().parents[1] / "docs" / "events.md"


def documented(section: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", body, re.M)


def test_the_window_fields_are_the_documented_ones() -> None:
    event = WindowEvent(0.0, 2.0, "happy", 0.7, {"happy": 0.7, "sad": 0.3}, {"happy": 0.6, "sad": 0.4}, 0.9)
    assert documented("window") == list(event.to_dict())


def test_the_summary_fields_are_the_documented_ones() -> None:
    assert documented("summary") == list(SessionSummary(labels=("happy", "sad")).to_dict())


def test_the_schema_version_and_the_parquet_columns_are_the_documented_ones() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"now **{EVENT_SCHEMA}**" in text and f"`{PARQUET_SCHEMA_KEY}`" in text
    parquet = text.split("## `windows.parquet`", 1)[1]
    assert all(f"`{column}`" in parquet for column in BASE_WINDOW_COLUMNS)
    assert WindowEvent(0.0, 1.0, "a", 1.0, {"a": 1.0}, {"a": 1.0}, 1.0).to_dict()["schema"] == EVENT_SCHEMA

"""Run outputs are written atomically and with ordinary permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from ser_live.realtime.fileio import JsonTooDeepError, atomic_write, loads_json, save_npy, write_json


def test_json_and_npy_round_trip_with_umask_permissions(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"uar": 0.5})
    save_npy(tmp_path / "x.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert json.loads((tmp_path / "m.json").read_text()) == {"uar": 0.5}
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy", allow_pickle=False), np.arange(6).reshape(2, 3))
    umask = os.umask(0)
    os.umask(umask)
    for name in ("m.json", "x.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    write_json(target, {"old": True})

    def half_then_fail(fh: object) -> None:
        fh.write(b'{"new": ')  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_json_never_holds_nan_or_infinity(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "m.json"
    write_json(path, {"uar": float("nan"), "per": [1.0, float("inf"), np.float32("-inf")], "ok": np.int64(3)})

    def refuse(token: str) -> None:
        raise AssertionError(token)

    assert json.loads(path.read_text(), parse_constant=refuse) == {"uar": None, "per": [1.0, None, None], "ok": 3}
    assert "m.json.uar is nan" in caplog.text and "m.json.per[1] is inf" in caplog.text


def test_json_nested_too_deep_is_a_value_error_like_any_bad_json() -> None:
    assert loads_json('{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(JsonTooDeepError, match="nested too deep") as info:
        loads_json("[" * 100_000 + "]" * 100_000)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError):
        loads_json("{not json")

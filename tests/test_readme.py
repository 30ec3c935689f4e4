"""The README's Python block runs as written (on a synthesised talk.wav and a profile fitted for the bundled
model), and a clip's verdict says whether it is uncertain."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from ser_live import EmotionRecognizer
from ser_live.realtime.api import clip_verdict
from ser_live.realtime.model import load_model
from ser_live.realtime.profile import make_profile, take_from_audio
from tests.audio_fixtures import espeak_wav

README = Path(__file__).resolve().parents[1] / "README.md"
TALK = "I told you twice already, and now we are late again. Never mind, we can still make the second show."


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_api_block_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import soundfile as sf

    block = next(b for b in python_blocks() if "EmotionRecognizer()" in b)
    espeak_wav(tmp_path / "talk.wav", TALK)
    model = load_model(None)
    takes = []
    for label, (pitch, speed) in {"happy": (80, 170), "sad": (20, 110)}.items():
        for i in range(3):
            samples, rate = sf.read(espeak_wav(tmp_path / f"{label}{i}.wav", TALK.split(".")[i % 2],
                                               pitch=pitch + 3 * i, speed=speed), dtype="float32")
            take = take_from_audio(model, samples, rate, label, source=f"{label}{i}")
            assert take is not None
            takes.append(take)
    make_profile(model, takes, name="me").save(tmp_path / "me.json")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {})
    printed = out.getvalue().splitlines()
    assert len(printed) >= 4 and printed[0].split()[0] in model.labels


def test_a_clip_verdict_is_uncertain_below_the_models_threshold() -> None:
    rec = EmotionRecognizer("small")  # v6 has a calibrated threshold (0.37)
    threshold = rec.model.info.calibration.min_confidence
    n = len(rec.model.labels)
    flat = np.full((3, n), 1.0 / n)
    sure = np.eye(n)[[0, 0, 0]] * 0.9 + 0.1 / n
    assert clip_verdict(rec.model, flat).uncertain and 1.0 / n < threshold
    assert not clip_verdict(rec.model, sure).uncertain


def command_lines() -> list[list[str]]:
    """Every ser-* command in the README's bash blocks (comments, pipes and `&&` chains cut), as argv lists."""
    import shlex

    out = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.split(" | ")[0], comments=True)
                if words and Path(words[0]).name.startswith("ser-"):
                    out.append([Path(words[0]).name, *words[1:]])
    return out


def test_every_readme_command_line_parses_with_its_commands_own_parser() -> None:
    """A renamed or mistyped option in the README fails here (argparse exits on what it does not know)."""
    from importlib import import_module
    from importlib.metadata import entry_points

    scripts = {e.name: e.value.split(":")[0] for e in entry_points(group="console_scripts")
               if e.value.startswith("ser_live.")}
    lines = command_lines()
    assert len(lines) >= 20 and {argv[0] for argv in lines} >= {"ser-live", "ser-serve", "ser-batch", "ser-stats"}
    for argv in lines:
        parser = import_module(scripts[argv[0]]).build_parser()
        try:
            parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"the README's `{' '.join(argv)}` does not parse")

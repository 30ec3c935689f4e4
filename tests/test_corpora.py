"""Corpus loaders over generated fixture trees in every naming convention (tiny real WAV/FLAC files)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_live.realtime.errors import UserError
from ser_live.train import corpora
from ser_live.train.corpora import (
    CORPORA,
    LABELS,
    LABELS_WITH_CALM,
    REASON_NOT_IN_LABEL_SET,
    Record,
    check_readable,
    load_corpora,
    load_corpus,
    parse_data_spec,
)

SR = 16_000
N_SAMPLES = 160


def write_audio(path: Path, seed: int = 0) -> Path:
    """A 10 ms noise clip in the format the extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(N_SAMPLES)).astype(np.float32), SR)
    return path


def make_tree(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        write_audio(root / name, seed=i)
    return root


def by_name(records: tuple[Record, ...]) -> dict[str, Record]:
    return {r.path.name: r for r in records}


# ------------------------------------------------------------------------------------------------- RAVDESS
def test_ravdess_speech_and_song_every_emotion(tmp_path: Path) -> None:
    names = [f"Actor_12/03-01-{e:02d}-01-01-01-12.wav" for e in range(1, 9)]
    names += ["Actor_03/03-02-05-02-02-01-03.flac"]  # song, FLAC
    make_tree(tmp_path, names)
    result = load_corpus("ravdess", tmp_path)
    recs = by_name(result.records)
    expected = ["neutral", "neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    for e, label in enumerate(expected, start=1):
        rec = recs[f"03-01-{e:02d}-01-01-01-12.wav"]
        assert rec.label == label
        assert rec.speaker == "ravdess:12"
        assert rec.corpus == "ravdess"
    song = recs["03-02-05-02-02-01-03.flac"]
    assert (song.label, song.speaker) == ("angry", "ravdess:03")
    assert result.problems == ()
    assert set(result.count_by("label")) <= set(LABELS)


def test_ravdess_keep_calm(tmp_path: Path) -> None:
    make_tree(tmp_path, ["03-01-02-01-01-01-01.wav", "03-01-01-01-01-01-01.wav"])
    kept = by_name(load_corpus("ravdess", tmp_path, keep_calm=True).records)
    assert kept["03-01-02-01-01-01-01.wav"].label == "calm"
    assert kept["03-01-01-01-01-01-01.wav"].label == "neutral"
    merged = by_name(load_corpus("ravdess", tmp_path).records)
    assert merged["03-01-02-01-01-01-01.wav"].label == "neutral"
    assert "calm" in LABELS_WITH_CALM and "calm" not in LABELS
    assert list(LABELS_WITH_CALM) == sorted(LABELS_WITH_CALM)


def test_ravdess_misnamed_files_are_reported_not_raised(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        [
            "Actor_01/03-01-05-01-01-01-01.wav",
            "Actor_01/03-01-05-01-01-01.wav",  # 6 fields
            "Actor_01/recording.wav",
            "Actor_01/03-01-09-01-01-01-01.wav",  # emotion 09
            "Actor_01/03-03-05-01-01-01-01.wav",  # vocal channel 03
        ],
    )
    (tmp_path / "README.txt").write_text("not audio")
    (tmp_path / "Actor_01" / ".DS_Store").write_bytes(b"\0\1")
    result = load_corpus("ravdess", tmp_path)
    assert [r.path.name for r in result.records] == ["03-01-05-01-01-01-01.wav"]
    reasons = {p.path.name: p.reason for p in result.problems}
    assert set(reasons) == {
        "03-01-05-01-01-01.wav",
        "recording.wav",
        "03-01-09-01-01-01-01.wav",
        "03-03-05-01-01-01-01.wav",
    }
    assert reasons["recording.wav"] == "name does not match RAVDESS pattern 03-01-EE-II-SS-RR-AA.wav"
    assert "09" in reasons["03-01-09-01-01-01-01.wav"]
    assert "channel" in reasons["03-03-05-01-01-01-01.wav"]
    assert {p.name for p in result.ignored} == {"README.txt", ".DS_Store"}
    summary = result.summary()
    assert summary["skipped"] == 4
    assert summary["ignored_non_audio"] == 2
    assert sum(summary["skipped_by_reason"].values()) == 4


# ---------------------------------------------------------------------------------------------------- TESS
def test_tess_names_folders_and_quirks(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        [
            "OAF_angry/OAF_back_angry.wav",
            "OAF_fear/OAF_back_fear.wav",
            "OAF_neutral/OA_bite_neutral.wav",  # the real quirk
            "YAF_pleasant_surprise/YAF_back_ps.flac",
            "YAF_disgust/YAF_back_disgust.wav",
            "YAF_happy/YAF_back_happy.wav",
            "YAF_sad/YAF_back_sad.wav",
            "YAF_neutral/YAF_back_neutral.wav",
            "Mixed/OAF_chair_pleasant_surprise.wav",
            "OAF_Sad/OAF_back_Sad.wav",  # case differs
        ],
    )
    recs = by_name(load_corpus("tess", tmp_path).records)
    expected = {
        "OAF_back_angry.wav": ("angry", "tess:OAF"),
        "OAF_back_fear.wav": ("fearful", "tess:OAF"),
        "OA_bite_neutral.wav": ("neutral", "tess:OAF"),
        "YAF_back_ps.flac": ("surprised", "tess:YAF"),
        "YAF_back_disgust.wav": ("disgust", "tess:YAF"),
        "YAF_back_happy.wav": ("happy", "tess:YAF"),
        "YAF_back_sad.wav": ("sad", "tess:YAF"),
        "YAF_back_neutral.wav": ("neutral", "tess:YAF"),
        "OAF_chair_pleasant_surprise.wav": ("surprised", "tess:OAF"),
        "OAF_back_Sad.wav": ("sad", "tess:OAF"),
    }
    assert {name: (r.label, r.speaker) for name, r in recs.items()} == expected


def test_tess_misnamed_and_two_speaker_note(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        [
            "OAF_angry/OAF_back_angry.wav",
            "YAF_angry/YAF_back_angry.wav",
            "misc/XYZ_back_angry.wav",  # unknown speaker, folder does not help
            "misc/OAF_back_bored.wav",  # unknown emotion, folder does not help
            "misc/OAF.wav",
        ],
    )
    result = load_corpus("tess", tmp_path)
    assert len(result.records) == 2
    reasons = {p.path.name: p.reason for p in result.problems}
    assert reasons["XYZ_back_angry.wav"].startswith("name does not match TESS pattern")
    assert reasons["OAF.wav"].startswith("name does not match TESS pattern")
    assert "'bored'" in reasons["OAF_back_bored.wav"]
    notes = result.notes()
    assert len(notes) == 1 and "tess has only 2 speaker" in notes[0]


# ------------------------------------------------------------------------------------------------- CREMA-D
def test_crema_d(tmp_path: Path) -> None:
    codes = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
    names = [f"1001_DFA_{code}_XX.wav" for code in codes] + ["1091_IEO_HAP_HI.wav", "1001_DFA_BOR_XX.wav", "x.wav"]
    make_tree(tmp_path, names)
    result = load_corpus("crema-d", tmp_path)
    recs = by_name(result.records)
    for code, label in codes.items():
        assert recs[f"1001_DFA_{code}_XX.wav"].label == label
        assert recs[f"1001_DFA_{code}_XX.wav"].speaker == "crema-d:1001"
    assert recs["1091_IEO_HAP_HI.wav"].speaker == "crema-d:1091"
    reasons = {p.path.name: p.reason for p in result.problems}
    assert "BOR" in reasons["1001_DFA_BOR_XX.wav"]
    assert reasons["x.wav"].startswith("name does not match CREMA-D pattern")
    assert load_corpus("crema", tmp_path).records == result.records  # alias


# --------------------------------------------------------------------------------------------------- SAVEE
def test_savee_flat_and_folder_layouts(tmp_path: Path) -> None:
    codes = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprised"}
    names = [f"DC_{code}01.wav" for code in codes] + ["KL/su15.wav", "JE_sa03.flac", "ZZ_a01.wav", "DC_x01.wav"]
    make_tree(tmp_path, names)
    result = load_corpus("savee", tmp_path)
    recs = by_name(result.records)
    for code, label in codes.items():
        assert (recs[f"DC_{code}01.wav"].label, recs[f"DC_{code}01.wav"].speaker) == (label, "savee:DC")
    assert (recs["su15.wav"].label, recs["su15.wav"].speaker) == ("surprised", "savee:KL")
    assert (recs["JE_sa03.flac"].label, recs["JE_sa03.flac"].speaker) == ("sad", "savee:JE")
    reasons = {p.path.name: p.reason for p in result.problems}
    assert "ZZ" in reasons["ZZ_a01.wav"]
    assert reasons["DC_x01.wav"].startswith("name does not match SAVEE pattern")


# ---------------------------------------------------------------------------------------------------- MESD
def test_mesd_voice_type_is_speaker(tmp_path: Path) -> None:
    words = {"Anger": "angry", "Disgust": "disgust", "Fear": "fearful", "Happiness": "happy"}
    words |= {"Neutral": "neutral", "Sadness": "sad"}
    names = [f"{w}_C_A_abajo.wav" for w in words] + ["Anger_F_B_casa.wav", "Anger_M_A_casa.wav"]
    names += ["Boredom_F_A_casa.wav", "Anger_X_A_casa.wav", "abajo.wav"]
    make_tree(tmp_path, names)
    result = load_corpus("mesd", tmp_path)
    recs = by_name(result.records)
    for w, label in words.items():
        assert (recs[f"{w}_C_A_abajo.wav"].label, recs[f"{w}_C_A_abajo.wav"].speaker) == (label, "mesd:C")
    assert recs["Anger_F_B_casa.wav"].speaker == "mesd:F"
    assert recs["Anger_M_A_casa.wav"].speaker == "mesd:M"
    reasons = {p.path.name: p.reason for p in result.problems}
    assert "Boredom" in reasons["Boredom_F_A_casa.wav"]
    assert "voice type" in reasons["Anger_X_A_casa.wav"]
    assert reasons["abajo.wav"].startswith("name does not match MESD pattern")


# --------------------------------------------------------------------------------------------------- EmoDB
def test_emodb_boredom_is_counted_not_loaded(tmp_path: Path) -> None:
    letters = {"W": "angry", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}
    names = [f"03a01{letter}a.wav" for letter in letters] + ["16b10Lb.wav", "08a02Lc.wav", "03a01Xa.wav", "bad.wav"]
    make_tree(tmp_path, names)
    result = load_corpus("emodb", tmp_path)
    recs = by_name(result.records)
    for letter, label in letters.items():
        assert (recs[f"03a01{letter}a.wav"].label, recs[f"03a01{letter}a.wav"].speaker) == (label, "emodb:03")
    counts = result.problem_counts()
    assert counts[f"{REASON_NOT_IN_LABEL_SET} (boredom)"] == 2
    reasons = {p.path.name: p.reason for p in result.problems}
    assert "X" in reasons["03a01Xa.wav"]
    assert reasons["bad.wav"].startswith("name does not match EmoDB pattern")
    # boredom stays out even with keep_calm
    assert len(load_corpus("emodb", tmp_path, keep_calm=True).records) == len(letters)


# ---------------------------------------------------------------------------------------------------- ASED
def test_ased_folders_letters_speakers_and_quirks(tmp_path: Path) -> None:
    folders = {"n1": "01Neutral", "f2": "02Fearful", "h3": "03Happy", "s4": "04Sad", "a5": "05Angry"}
    labels = {"n1": "neutral", "f2": "fearful", "h3": "happy", "s4": "sad", "a5": "angry"}
    names = [f"{folders[code]}/{code}-03-02-02-{sp:02d}.flac" for code in folders for sp in (5, 41)]
    names += ["04Sad/S4-04-02-01-29.flac"]  # the real corpus spells one file with a capital
    names += ["05Angry/a4-01-01-01-07.flac", "05Angry/x5-01-01-01-07.flac", "01Neutral/n1-01-01-03-07.flac"]
    names += ["01Neutral/n1-01-01-01.flac"]
    make_tree(tmp_path, names)
    (tmp_path / "01Neutral" / "README.txt").write_text("not audio")
    result = load_corpus("ased", tmp_path)
    recs = by_name(result.records)
    for code, label in labels.items():
        for sp in (5, 41):
            rec = recs[f"{code}-03-02-02-{sp:02d}.flac"]
            assert (rec.label, rec.speaker, rec.corpus) == (label, f"ased:{sp:02d}", "ased")
    assert (recs["S4-04-02-01-29.flac"].label, recs["S4-04-02-01-29.flac"].speaker) == ("sad", "ased:29")
    assert len(result.records) == 11
    reasons = {p.path.name: p.reason for p in result.problems}
    assert "number 5, not 4" in reasons["a4-01-01-01-07.flac"]
    assert "letter 'x'" in reasons["x5-01-01-01-07.flac"]
    assert "gender field 03" in reasons["n1-01-01-03-07.flac"]
    assert reasons["n1-01-01-01.flac"].startswith("name does not match ASED pattern")
    assert "README.txt" not in reasons
    assert set(LABELS) - {r.label for r in result.records} == {"disgust", "surprised"}


# ---------------------------------------------------------------------------------- the shared corpora, Opus
def write_opus(path: Path, seed: int = 0) -> Path:
    """A 0.1 s noise clip as 16 kHz Ogg Opus, as ../shared/data stores most corpora."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(SR // 10)).astype(np.float32), SR, format="OGG", subtype="OPUS")
    return path


def opus_tree(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        write_opus(root / name, seed=i)
    return root


def test_banglaser_fields_by_position_every_emotion(tmp_path: Path) -> None:
    names = [f"03-01-{e:02d}-01-01-02-05.opus" for e in range(1, 6)]
    names += ["01-01-03-02-03-01-34.opus", "03-01-06-01-01-01-01.opus", "03-01-01-01-01.opus"]
    result = load_corpus("banglaser", opus_tree(tmp_path, names))
    recs = by_name(result.records)
    assert [recs[f"03-01-{e:02d}-01-01-02-05.opus"].label for e in range(1, 6)] == [
        "happy", "sad", "angry", "surprised", "neutral"]
    assert (recs["01-01-03-02-03-01-34.opus"].label, recs["01-01-03-02-03-01-34.opus"].speaker) == (
        "angry", "banglaser:34")  # the three real files that begin 01-
    reasons = {p.path.name: p.reason for p in result.problems}
    assert "emotion code 06" in reasons["03-01-06-01-01-01-01.opus"]
    assert reasons["03-01-01-01-01.opus"].startswith("name does not match BanglaSER pattern")


def test_aesdd_folder_is_the_label_and_speaker_from_the_brackets(tmp_path: Path) -> None:
    names = ["anger/a05 (3).opus", "disgust/d20 (1).opus", "fear/f01 (6)b.opus", "happiness/h08 (05).opus",
             "sadness/s01 (5)a.opus", "sadness/a02 (2).opus", "boredom/b01 (1).opus", "anger/a05.opus"]
    result = load_corpus("aesdd", opus_tree(tmp_path, names))
    got = {r.path.relative_to(tmp_path).as_posix(): (r.label, r.speaker) for r in result.records}
    assert got == {"anger/a05 (3).opus": ("angry", "aesdd:3"), "disgust/d20 (1).opus": ("disgust", "aesdd:1"),
                   "fear/f01 (6)b.opus": ("fearful", "aesdd:6"), "happiness/h08 (05).opus": ("happy", "aesdd:5"),
                   "sadness/s01 (5)a.opus": ("sad", "aesdd:5")}
    reasons = {p.path.relative_to(tmp_path).as_posix(): p.reason for p in result.problems}
    assert "starts with 'a', not 's'" in reasons["sadness/a02 (2).opus"]
    assert "folder 'boredom'" in reasons["boredom/b01 (1).opus"]
    assert reasons["anger/a05.opus"].startswith("name does not match AESDD pattern")


def test_jl_drops_excited_and_says_so(tmp_path: Path) -> None:
    names = ["female/female1_angry_1a_1.opus", "male/male2_happy_12b_2.opus", "male/male2_sad_3a_1.opus",
             "female/female1_excited_9a_1.opus"]
    result = load_corpus("jl", opus_tree(tmp_path, names))
    assert {(r.label, r.speaker) for r in result.records} == {
        ("angry", "jl:female1"), ("happy", "jl:male2"), ("sad", "jl:male2")}
    assert result.problem_counts() == {f"{REASON_NOT_IN_LABEL_SET} (excited)": 1}


def test_emospeech_unknown_user_is_one_training_only_speaker(tmp_path: Path) -> None:
    unknown = corpora.EMOSPEECH_UNKNOWN_USER
    known = "9dd2014cc6e95226ece8fd97fa8296acea7957d841ba48e82486e842"
    names = [f"Railway/help-safe-calm-20190710134633-{unknown}.opus",
             f"Metro/bacho-safe-angry-20190710134910.123456-{known}.opus",
             f"webservice/stop-safe-happy-20190618164152 copy-{known}.opus",
             f"House/help-safe-fearful-??-{unknown}.opus",
             f"House/help-safe-bored-20190710134633-{known}.opus"]
    result = load_corpus("emospeech", opus_tree(tmp_path, names))
    got = sorted((r.label, r.speaker) for r in result.records)
    assert got == sorted([("neutral", "emospeech:unknown"), ("angry", f"emospeech:{known[:12]}"),
                          ("happy", f"emospeech:{known[:12]}"), ("fearful", "emospeech:unknown")])
    assert "emospeech:unknown" in corpora.TRAIN_ONLY_SPEAKERS
    calm = load_corpus("emospeech", tmp_path, keep_calm=True).records
    assert "calm" in {r.label for r in calm}
    assert "emotion 'bored'" in result.problems[0].reason


def test_baved_levels_load_only_where_levels_are_asked_for(tmp_path: Path) -> None:
    names = ["3/101-m-20-3-2-47.opus", "0/47-m-20-0-0-956.opus", "1/2-f-25-1-1-934.opus", "1/2-f-25-1-3-934.opus"]
    opus_tree(tmp_path, names)
    with pytest.raises(UserError, match=r"arousal levels .* not emotions"):
        load_corpus("baved", tmp_path)
    with pytest.raises(UserError, match="arousal levels"):
        load_corpora([("baved", tmp_path)])  # what ser-train, ser-eval and ser-calibrate call
    result = load_corpus("baved", tmp_path, levels=True)
    assert {(r.path.name, r.label, r.speaker) for r in result.records} == {
        ("101-m-20-3-2-47.opus", "arousal_high", "baved:101"), ("47-m-20-0-0-956.opus", "arousal_low", "baved:47"),
        ("2-f-25-1-1-934.opus", "arousal_neutral", "baved:2")}
    assert "level 3" in result.problems[0].reason
    assert not set(corpora.AROUSAL_LABELS) & set(LABELS_WITH_CALM)


def test_savee_and_emodb_read_the_shared_opus_layout(tmp_path: Path) -> None:
    savee = load_corpus("savee", opus_tree(tmp_path / "savee", ["DC/a01.opus", "KL/sa15.opus", "JE/su03.opus"]))
    assert {(r.label, r.speaker) for r in savee.records} == {("angry", "savee:DC"), ("sad", "savee:KL"),
                                                              ("surprised", "savee:JE")}
    emodb = load_corpus("emodb", opus_tree(tmp_path / "emodb", ["03a01Fa.opus", "16b10Wb.opus", "08a04Lc.opus"]))
    assert {(r.label, r.speaker) for r in emodb.records} == {("happy", "emodb:03"), ("angry", "emodb:16")}
    assert emodb.problem_counts() == {f"{REASON_NOT_IN_LABEL_SET} (boredom)": 1}


# --------------------------------------------------------------------------------------------------- API
def test_every_registered_corpus_has_a_fixture_test() -> None:
    assert set(CORPORA) == {"ravdess", "tess", "crema-d", "savee", "mesd", "emodb", "ased", "banglaser", "aesdd",
                            "jl", "emospeech", "baved"}


def test_load_corpora_merges_namespaces_and_dedupes(tmp_path: Path) -> None:
    rav = make_tree(tmp_path / "rav", ["03-01-05-01-01-01-01.wav", "03-01-04-01-01-01-02.wav"])
    sav = make_tree(tmp_path / "sav", ["DC_a01.wav"])
    emo = make_tree(tmp_path / "emo", ["01a01Wa.wav"])  # speaker "01" also exists in RAVDESS
    result = load_corpora([("ravdess", rav), ("savee", str(sav)), ("emodb", emo), ("ravdess", rav)])
    assert len(result.records) == 4
    assert {p.reason for p in result.problems} == {corpora.REASON_DUPLICATE}
    assert len(result.problems) == 2
    assert result.count_by("corpus") == {"emodb": 1, "ravdess": 2, "savee": 1}
    speakers = result.count_by("speaker")
    assert "ravdess:01" in speakers and "emodb:01" in speakers
    assert result.summary()["speakers_per_corpus"] == {"emodb": 1, "ravdess": 2, "savee": 1}
    with pytest.raises(ValueError, match="count_by"):
        result.count_by("path")


def test_missing_folder_unknown_corpus_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"does not exist.*--data ravdess=PATH"):
        load_corpus("ravdess", tmp_path / "nope")
    file_path = write_audio(tmp_path / "a.wav")
    with pytest.raises(UserError, match="is not a folder"):
        load_corpus("ravdess", file_path)
    with pytest.raises(UserError, match=r"unknown corpus 'iemocap'.*ravdess.*tess.*crema-d.*savee.*mesd.*emodb"):
        load_corpus("iemocap", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no RAVDESS audio found"):
        load_corpus("ravdess", empty)
    tess = make_tree(tmp_path / "tess", ["OAF_angry/OAF_back_angry.wav"])
    with pytest.raises(UserError, match=r"no RAVDESS audio found.*OAF_back_angry.wav.*RAVDESS pattern"):
        load_corpus("ravdess", tess)  # the wrong corpus name for this folder
    with pytest.raises(UserError, match="--data NAME=PATH"):
        load_corpora([])


def test_any_soundfile_format_is_audio(tmp_path: Path) -> None:
    make_tree(tmp_path, ["03-01-05-01-01-01-01.ogg", "03-01-05-01-01-01-02.aiff", "03-01-05-01-01-01-03.flac"])
    (tmp_path / "03-01-05-01-01-01-04.txt").write_text("looks like a name, but text")
    result = load_corpus("ravdess", tmp_path)
    assert sorted(r.path.suffix for r in result.records) == [".aiff", ".flac", ".ogg"]
    assert [p.suffix for p in result.ignored] == [".txt"]
    assert {"wav", "flac", "ogg"} <= corpora.audio_extensions()


def test_parse_data_spec(tmp_path: Path) -> None:
    assert parse_data_spec(f"ravdess={tmp_path}") == ("ravdess", tmp_path)
    assert parse_data_spec("CREMA=/x/y") == ("crema-d", Path("/x/y"))
    assert parse_data_spec("tess=/a=b") == ("tess", Path("/a=b"))
    assert parse_data_spec("tess=~/t") == ("tess", Path.home() / "t")
    for bad in ("ravdess", "=/x", "ravdess=", ""):
        with pytest.raises(UserError, match="NAME=PATH"):
            parse_data_spec(bad)
    with pytest.raises(UserError, match="unknown corpus 'foo'"):
        parse_data_spec("foo=/x")


def test_check_readable(tmp_path: Path) -> None:
    good = write_audio(tmp_path / "good.wav")
    good_flac = write_audio(tmp_path / "good.flac")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not a RIFF header at all" * 8)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    assert check_readable(good) is None
    assert check_readable(good_flac) is None
    reason = check_readable(garbage)
    assert reason is not None and reason.startswith("cannot be read as audio")
    assert "\n" not in reason
    assert check_readable(empty) == "holds no audio samples"
    assert check_readable(tmp_path / "missing.wav") is not None


def test_unreadable_audio_is_loaded_by_name_and_caught_by_check_readable(tmp_path: Path) -> None:
    make_tree(tmp_path, ["03-01-05-01-01-01-01.wav"])
    (tmp_path / "03-01-04-01-01-01-01.wav").write_bytes(b"\x00garbage" * 10)
    result = load_corpus("ravdess", tmp_path)
    assert len(result.records) == 2  # the name is fine; reading is the feature stage's job
    unreadable = [r.path.name for r in result.records if check_readable(r.path) is not None]
    assert unreadable == ["03-01-04-01-01-01-01.wav"]


def test_problems_are_logged_once_per_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_tree(tmp_path, ["03-01-05-01-01-01-01.wav", "a.wav", "b.wav", "c.wav"])
    with caplog.at_level(logging.WARNING, logger="ser_live.train.corpora"):
        load_corpus("ravdess", tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 3 file(s)" in warnings[0] and "RAVDESS pattern" in warnings[0]

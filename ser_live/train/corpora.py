"""Corpus loaders: a folder of an emotional-speech corpus -> :class:`Record` (path, label, speaker, corpus).

Every corpus encodes the emotion (and usually the speaker) in its file names. Each loader here knows one
convention, maps the corpus's emotions onto **one label set** shared by all corpora::

    angry, disgust, fearful, happy, neutral, sad, surprised        (+ calm, with keep_calm=True)

and namespaces speaker ids by corpus (``"ravdess:12"``, ``"tess:OAF"``), so that speakers of different corpora
never collide in a speaker-independent split.

Supported corpora (``CORPORA``) and their conventions:

``ravdess``
    RAVDESS speech and song, ``03-01-05-01-02-01-12.wav``: 7 two-digit fields
    ``modality-channel-emotion-intensity-statement-repetition-actor``. Emotion (3rd field): 01 neutral, 02 calm,
    03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised. Speaker = actor (7th field).
``tess``
    Toronto Emotional Speech Set, ``OAF_back_angry.wav`` in folders ``OAF_angry`` ... ``YAF_sad``. Emotion = last
    ``_`` field (``ps`` = pleasant surprise -> surprised, ``fear`` -> fearful), or the folder name when the file name
    has none. Speaker = OAF or YAF from the name prefix (one real file is named ``OA_bite_neutral``: OAF).
    TESS has **two speakers only**: a speaker split that holds one of them out tests on a single voice.
``crema-d``
    CREMA-D, ``1001_DFA_ANG_XX.wav``: ``actor_sentence_emotion_intensity``. Emotions ANG angry, DIS disgust,
    FEA fearful, HAP happy, NEU neutral, SAD sad. Speaker = the 4-digit actor id.
``savee``
    SAVEE, ``DC_a01.wav`` (or ``DC/a01.wav`` in the original layout): speakers DC, JE, JK, KL; codes a angry,
    d disgust, f fearful, h happy, n neutral, sa sad, su surprised.
``mesd``
    Mexican Emotional Speech Database, ``Anger_C_A_abajo.wav``: emotion word (Anger, Disgust, Fear, Happiness,
    Neutral, Sadness), voice type (C child, F female adult, M male adult), word-corpus letter, word. MESD publishes
    **no per-speaker ids**, so the speaker is the voice type (``"mesd:F"``): a speaker split holds out a whole
    voice type, which is stricter than a true speaker split but never leaks a voice.
``ased``
    ASED v1, Amharic Speech Emotion Dataset, ``n1-01-01-02-05.flac`` in folders ``01Neutral`` ... ``05Angry``:
    ``xN-SS-RR-GG-PP`` with x the emotion letter (n neutral, f fearful, h happy, s sad, a angry; one real file is
    spelled with a capital, ``S4-...``), N its folder number (1-5, checked against the letter), SS sentence, RR
    repetition, GG gender (01 female, 02 male), PP speaker 01-65 (``"ased:05"``). Five labels: no disgust, no
    surprise. Five of the seven sentences per emotion are only ever spoken in that emotion, so words can leak the
    label within ASED: hold out speakers (and prefer leave-one-corpus-out) when you report on it.
``emodb``
    Berlin EmoDB, ``03a01Fa.wav``: speaker (2 digits), text code (3), emotion letter, version. W angry, L boredom,
    E disgust, A fearful, F happy, T sad, N neutral. Boredom has no place in the label set: those files are
    skipped and counted as ``label not in label set (boredom)``.
``banglaser``
    BanglaSER, ``03-01-01-01-01-02-05.wav``: ``MM-SS-EE-II-TT-RR-AA`` read by position (three real files begin
    ``01-``). EE 01 happy, 02 sad, 03 angry, 04 surprised, 05 neutral; II intensity; TT statement; RR repetition;
    AA speaker 01-34.
``aesdd``
    AESDD (Greek), ``anger/a05 (3).wav`` or ``sadness/s04 (5)b.wav``: the folder is the label (anger, disgust,
    fear, happiness, sadness; no neutral), the name ``<letter><AA> (<B>)[b]`` with the folder's first letter, AA the
    utterance, B the speaker 1-6 and a trailing ``b`` a second take.
``jl``
    JL corpus, primary emotions, ``female1_happy_6b_1.wav``: ``<speaker>_<emotion>_<sentence>_<take>``; angry,
    happy, sad kept, ``excited`` (no counterpart) skipped and counted.
``emospeech``
    Indian EmoSpeech Command dataset, ``help-safe-calm-20190710134633-<userhash>.wav``:
    ``<keyword>-<context>-<emotion>-<timestamp>-<userhash>``, emotions calm (neutral unless keep_calm), angry,
    happy, fearful. The hash ``d14a028c...`` stands for *unknown user* (anyone, the known users included): those
    files get the speaker ``emospeech:unknown``, which :data:`TRAIN_ONLY_SPEAKERS` names: they may only ever be
    training data, never validation or test, and never stand for one speaker.
``baved``
    BAVED (Arabic), ``baved/3/101-m-20-3-2-47.wav``: ``SPK-G-AGE-WORD-LEVEL-REC``, LEVEL 0 low, 1 neutral, 2 high.
    **Arousal levels, not emotions**: its records carry ``arousal_low`` / ``arousal_neutral`` / ``arousal_high``
    (:data:`AROUSAL_LABELS`), which no emotion label set contains; a level corpus is loaded only where levels are
    asked for (``load_corpus(..., levels=True)``), and ser-train refuses it in one line.

Any file soundfile can read counts as audio (.wav, .flac, .ogg, .aiff, ...); other files (README.txt, hidden
files) are ignored and counted. A name that does not fit the convention is reported as a :class:`Problem` naming the
file and the expected pattern; nothing here raises on a bad file. Whether the audio itself is readable is checked
later, when features are computed (:func:`check_readable` is the test for it).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import soundfile as sf

from ser_live.realtime.errors import UserError
from ser_live.realtime.sources.audio import audio_extensions

logger = logging.getLogger(__name__)

ANGRY = "angry"
CALM = "calm"
DISGUST = "disgust"
FEARFUL = "fearful"
HAPPY = "happy"
NEUTRAL = "neutral"
SAD = "sad"
SURPRISED = "surprised"
BOREDOM = "boredom"
EXCITED = "excited"
#: BAVED's levels (arousal, not emotion): low, neutral, high.
AROUSAL_LABELS: tuple[str, ...] = ("arousal_low", "arousal_neutral", "arousal_high")
#: Speakers that stand for "anyone" (EmoSpeech's unknown user): training data only, never one speaker's clips.
TRAIN_ONLY_SPEAKERS: frozenset[str] = frozenset({"emospeech:unknown"})

#: The shared label set, sorted (the order a model's outputs use).
LABELS: tuple[str, ...] = (ANGRY, DISGUST, FEARFUL, HAPPY, NEUTRAL, SAD, SURPRISED)
#: The label set with calm kept as an eighth class (seed 2).
LABELS_WITH_CALM: tuple[str, ...] = tuple(sorted((*LABELS, CALM)))

#: Below this many speakers, a corpus cannot give a meaningful speaker-independent result on its own.
MIN_SPEAKERS_FOR_SPEAKER_SPLIT = 3
#: How many example problems a log message or an error quotes.
MAX_QUOTED_PROBLEMS = 3

REASON_NOT_IN_LABEL_SET = "label not in label set"
REASON_DUPLICATE = "same file listed twice (duplicate --data folder?)"


def label_set(keep_calm: bool = False) -> tuple[str, ...]:
    """The sorted label set: 7 labels, or 8 with ``keep_calm``."""
    return LABELS_WITH_CALM if keep_calm else LABELS


@dataclass(frozen=True)
class Record:
    """One labelled clip. ``speaker`` is namespaced by corpus (``"ravdess:12"``); ``corpus`` is its canonical name."""

    path: Path
    label: str
    speaker: str
    corpus: str


class Problem(NamedTuple):
    """A file that was not loaded, and why (one line, naming the expected pattern where that is the cause)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class LoadResult:
    """Records loaded, files reported (misnamed, out-of-set labels) and non-audio files ignored."""

    records: tuple[Record, ...] = ()
    problems: tuple[Problem, ...] = ()
    ignored: tuple[Path, ...] = ()

    def count_by(self, field: str) -> dict[str, int]:
        """Record counts per value of ``field`` ("label", "speaker" or "corpus"), sorted by value."""
        if field not in ("label", "speaker", "corpus"):
            raise ValueError(f"count_by field must be label, speaker or corpus, not {field!r}")
        return dict(sorted(Counter(getattr(r, field) for r in self.records).items()))

    def problem_counts(self) -> dict[str, int]:
        """How many files were skipped for each reason."""
        return dict(sorted(Counter(p.reason for p in self.problems).items()))

    def speakers_per_corpus(self) -> dict[str, list[str]]:
        """Sorted speaker ids of each corpus."""
        out: dict[str, set[str]] = {}
        for r in self.records:
            out.setdefault(r.corpus, set()).add(r.speaker)
        return {corpus: sorted(speakers) for corpus, speakers in sorted(out.items())}

    def notes(self) -> list[str]:
        """Warnings worth putting in a run's report (e.g. TESS has two speakers only)."""
        notes = []
        for corpus, speakers in self.speakers_per_corpus().items():
            if len(speakers) < MIN_SPEAKERS_FOR_SPEAKER_SPLIT:
                notes.append(
                    f"{corpus} has only {len(speakers)} speaker(s) ({', '.join(speakers)}): a speaker split "
                    f"cannot give a speaker-independent result on {corpus} alone"
                )
        return notes

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: counts per corpus, label and speaker; skipped files by reason; notes."""
        return {
            "records": len(self.records),
            "per_corpus": self.count_by("corpus"),
            "per_label": self.count_by("label"),
            "per_speaker": self.count_by("speaker"),
            "speakers_per_corpus": {c: len(s) for c, s in self.speakers_per_corpus().items()},
            "skipped": len(self.problems),
            "skipped_by_reason": self.problem_counts(),
            "ignored_non_audio": len(self.ignored),
            "notes": self.notes(),
        }

    def merge(self, other: LoadResult) -> LoadResult:
        """Both results together (no de-duplication; see :func:`load_corpora`)."""
        return LoadResult(self.records + other.records, self.problems + other.problems, self.ignored + other.ignored)


class ParsedName(NamedTuple):
    """What a file name says: the corpus's emotion mapped to our vocabulary, and the corpus-local speaker id."""

    label: str
    speaker: str


# A parser returns the parsed name, or a one-line reason why the name does not fit.
Parser = Callable[[Path], "ParsedName | str"]


@dataclass(frozen=True)
class CorpusSpec:
    """One supported corpus: canonical name, display title, expected name pattern, name parser."""

    name: str
    title: str
    pattern: str
    parse: Parser
    levels: bool = False  # labels are arousal levels (AROUSAL_LABELS), not emotions

    def mismatch(self) -> str:
        return f"name does not match {self.title} pattern {self.pattern}"


# ---------------------------------------------------------------------------------------------------- RAVDESS
RAVDESS_EMOTIONS = {
    "01": NEUTRAL,
    "02": CALM,
    "03": HAPPY,
    "04": SAD,
    "05": ANGRY,
    "06": FEARFUL,
    "07": DISGUST,
    "08": SURPRISED,
}
RAVDESS_CHANNELS = ("01", "02")  # speech, song
_RAVDESS_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def _parse_ravdess(path: Path) -> ParsedName | str:
    m = _RAVDESS_RE.match(path.stem)
    if not m:
        return CORPORA["ravdess"].mismatch()
    _modality, channel, emotion, _intensity, _statement, _repetition, actor = m.groups()
    if channel not in RAVDESS_CHANNELS:
        return f"RAVDESS vocal channel {channel} is neither 01 (speech) nor 02 (song) in 03-01-EE-II-SS-RR-AA"
    if emotion not in RAVDESS_EMOTIONS:
        return f"RAVDESS emotion code {emotion} is not 01-08 in 03-01-EE-II-SS-RR-AA"
    return ParsedName(RAVDESS_EMOTIONS[emotion], actor)


# ------------------------------------------------------------------------------------------------------- TESS
TESS_EMOTIONS = {
    "angry": ANGRY,
    "disgust": DISGUST,
    "fear": FEARFUL,
    "happy": HAPPY,
    "neutral": NEUTRAL,
    "ps": SURPRISED,
    "sad": SAD,
    "pleasant_surprise": SURPRISED,
    "pleasant_surprised": SURPRISED,
}
# Name prefix -> speaker. "OA" occurs once in the real corpus (OA_bite_neutral).
TESS_SPEAKERS = {"OAF": "OAF", "OA": "OAF", "YAF": "YAF", "YA": "YAF"}
_TESS_MIN_FIELDS = 3  # speaker_word_emotion


def _tess_emotion(tokens: Sequence[str]) -> str | None:
    """Emotion from the tail of ``_``-separated tokens: the last one, or the last two (pleasant_surprise)."""
    for n in (2, 1):
        if len(tokens) > n:
            label = TESS_EMOTIONS.get("_".join(tokens[-n:]))
            if label is not None:
                return label
    return None


def _parse_tess(path: Path) -> ParsedName | str:
    tokens = path.stem.lower().split("_")
    folder = path.parent.name.lower().split("_")
    speaker = TESS_SPEAKERS.get(tokens[0].upper())
    if speaker is None:
        speaker = TESS_SPEAKERS.get(folder[0].upper())
    if len(tokens) < _TESS_MIN_FIELDS or speaker is None:
        return CORPORA["tess"].mismatch()
    label = _tess_emotion(tokens) or _tess_emotion(folder)
    if label is None:
        return f"TESS emotion {tokens[-1]!r} is not one of {', '.join(sorted(TESS_EMOTIONS))}"
    return ParsedName(label, speaker)


# ---------------------------------------------------------------------------------------------------- CREMA-D
CREMA_EMOTIONS = {"ANG": ANGRY, "DIS": DISGUST, "FEA": FEARFUL, "HAP": HAPPY, "NEU": NEUTRAL, "SAD": SAD}
_CREMA_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$", re.IGNORECASE)


def _parse_crema(path: Path) -> ParsedName | str:
    m = _CREMA_RE.match(path.stem)
    if not m:
        return CORPORA["crema-d"].mismatch()
    actor, _sentence, emotion, _intensity = m.groups()
    label = CREMA_EMOTIONS.get(emotion.upper())
    if label is None:
        return f"CREMA-D emotion code {emotion} is not one of {', '.join(CREMA_EMOTIONS)}"
    return ParsedName(label, actor)


# ------------------------------------------------------------------------------------------------------ SAVEE
SAVEE_EMOTIONS = {
    "a": ANGRY,
    "d": DISGUST,
    "f": FEARFUL,
    "h": HAPPY,
    "n": NEUTRAL,
    "sa": SAD,
    "su": SURPRISED,
}
SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
_SAVEE_RE = re.compile(r"^(?:([a-z]{2})_)?(sa|su|a|d|f|h|n)(\d{2})$", re.IGNORECASE)


def _parse_savee(path: Path) -> ParsedName | str:
    m = _SAVEE_RE.match(path.stem)
    if not m:
        return CORPORA["savee"].mismatch()
    prefix, code, _number = m.groups()
    speaker = (prefix or path.parent.name).upper()  # DC_a01.wav, or DC/a01.wav in the original layout
    if speaker not in SAVEE_SPEAKERS:
        return f"SAVEE speaker {speaker!r} is not one of {', '.join(SAVEE_SPEAKERS)} (name or folder)"
    return ParsedName(SAVEE_EMOTIONS[code.lower()], speaker)


# ------------------------------------------------------------------------------------------------------- MESD
MESD_EMOTIONS = {
    "anger": ANGRY,
    "disgust": DISGUST,
    "fear": FEARFUL,
    "happiness": HAPPY,
    "neutral": NEUTRAL,
    "sadness": SAD,
}
MESD_VOICES = {"C": "child", "F": "female", "M": "male"}
_MESD_RE = re.compile(r"^([a-z]+)_([a-z])_([a-z])_(.+)$", re.IGNORECASE)


def _parse_mesd(path: Path) -> ParsedName | str:
    m = _MESD_RE.match(path.stem)
    if not m:
        return CORPORA["mesd"].mismatch()
    emotion, voice, _word_corpus, _word = m.groups()
    label = MESD_EMOTIONS.get(emotion.lower())
    if label is None:
        return f"MESD emotion {emotion!r} is not one of {', '.join(w.title() for w in MESD_EMOTIONS)}"
    if voice.upper() not in MESD_VOICES:
        return f"MESD voice type {voice!r} is not C (child), F (female) or M (male)"
    # MESD has no per-speaker ids: the voice type is the finest speaker grouping available.
    return ParsedName(label, voice.upper())


# ------------------------------------------------------------------------------------------------------- ASED
ASED_EMOTIONS = {"n": (NEUTRAL, "1"), "f": (FEARFUL, "2"), "h": (HAPPY, "3"), "s": (SAD, "4"), "a": (ANGRY, "5")}
ASED_GENDERS = ("01", "02")  # female, male
_ASED_RE = re.compile(r"^([a-z])(\d)-(\d{2})-(\d{2})-(\d{2})-(\d{2})$", re.IGNORECASE)


def _parse_ased(path: Path) -> ParsedName | str:
    m = _ASED_RE.match(path.stem)
    if not m:
        return CORPORA["ased"].mismatch()
    letter, number, _sentence, _repetition, gender, speaker = m.groups()
    entry = ASED_EMOTIONS.get(letter.lower())
    if entry is None:
        return f"ASED emotion letter {letter!r} is not one of {', '.join(ASED_EMOTIONS)} in xN-SS-RR-GG-PP"
    label, expected_number = entry
    if number != expected_number:
        return f"ASED emotion {letter!r} goes with number {expected_number}, not {number}, in xN-SS-RR-GG-PP"
    if gender not in ASED_GENDERS:
        return f"ASED gender field {gender} is neither 01 (female) nor 02 (male) in xN-SS-RR-GG-PP"
    return ParsedName(label, speaker)


# ------------------------------------------------------------------------------------------------------ EmoDB
EMODB_EMOTIONS = {
    "W": ANGRY,
    "L": BOREDOM,
    "E": DISGUST,
    "A": FEARFUL,
    "F": HAPPY,
    "T": SAD,
    "N": NEUTRAL,
}
_EMODB_RE = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")


def _parse_emodb(path: Path) -> ParsedName | str:
    m = _EMODB_RE.match(path.stem)
    if not m:
        return CORPORA["emodb"].mismatch()
    speaker, _text, emotion, _version = m.groups()
    label = EMODB_EMOTIONS.get(emotion)
    if label is None:
        return f"EmoDB emotion letter {emotion} is not one of {', '.join(EMODB_EMOTIONS)}"
    return ParsedName(label, speaker)


# -------------------------------------------------------------------------------------------------- BanglaSER
BANGLASER_EMOTIONS = {"01": HAPPY, "02": SAD, "03": ANGRY, "04": SURPRISED, "05": NEUTRAL}
_BANGLASER_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def _parse_banglaser(path: Path) -> ParsedName | str:
    m = _BANGLASER_RE.match(path.stem)
    if not m:
        return CORPORA["banglaser"].mismatch()
    emotion, speaker = m.group(3), m.group(7)
    if emotion not in BANGLASER_EMOTIONS:
        return f"BanglaSER emotion code {emotion} is not 01-05 in MM-SS-EE-II-TT-RR-AA"
    return ParsedName(BANGLASER_EMOTIONS[emotion], speaker)


# ------------------------------------------------------------------------------------------------------ AESDD
AESDD_EMOTIONS = {"anger": ANGRY, "disgust": DISGUST, "fear": FEARFUL, "happiness": HAPPY, "sadness": SAD}
_AESDD_RE = re.compile(r"^([a-z])(\d{2}) ?\((\d+)\)([a-z]?)$", re.IGNORECASE)


def _parse_aesdd(path: Path) -> ParsedName | str:
    folder = path.parent.name.lower()
    label = AESDD_EMOTIONS.get(folder)
    if label is None:
        return f"AESDD folder {path.parent.name!r} is not one of {', '.join(AESDD_EMOTIONS)}"
    m = _AESDD_RE.match(path.stem)
    if not m:
        return CORPORA["aesdd"].mismatch()
    letter, _utterance, speaker, _take = m.groups()
    if letter.lower() != folder[0]:
        return f"AESDD name {path.name!r} starts with {letter!r}, not {folder[0]!r} as its folder {folder} says"
    return ParsedName(label, str(int(speaker)))  # "(01)" and "(1)" are one speaker


# --------------------------------------------------------------------------------------------------------- JL
JL_EMOTIONS = {"angry": ANGRY, "happy": HAPPY, "sad": SAD, "excited": EXCITED}
_JL_RE = re.compile(r"^([a-z]+\d+)_([a-z]+)_([0-9a-z]+)_(\d+)$", re.IGNORECASE)


def _parse_jl(path: Path) -> ParsedName | str:
    m = _JL_RE.match(path.stem)
    if not m:
        return CORPORA["jl"].mismatch()
    speaker, emotion, _sentence, _take = m.groups()
    label = JL_EMOTIONS.get(emotion.lower())
    if label is None:
        return f"JL emotion {emotion!r} is not one of {', '.join(JL_EMOTIONS)}"
    return ParsedName(label, speaker.lower())


# -------------------------------------------------------------------------------------------------- EmoSpeech
EMOSPEECH_EMOTIONS = {"calm": CALM, "angry": ANGRY, "happy": HAPPY, "fearful": FEARFUL}
EMOSPEECH_UNKNOWN_USER = "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"
_EMOSPEECH_RE = re.compile(r"^([^-]+)-([^-]+)-([a-z]+)-([^-]+)-([0-9a-f]{16,})$", re.IGNORECASE)
EMOSPEECH_HASH_CHARS = 12  # a known user's speaker id: the first characters of the hash


def _parse_emospeech(path: Path) -> ParsedName | str:
    m = _EMOSPEECH_RE.match(path.stem)
    if not m:
        return CORPORA["emospeech"].mismatch()
    _keyword, _context, emotion, _timestamp, user = m.groups()  # timestamps come in several spellings
    label = EMOSPEECH_EMOTIONS.get(emotion.lower())
    if label is None:
        return f"EmoSpeech emotion {emotion!r} is not one of {', '.join(EMOSPEECH_EMOTIONS)}"
    speaker = "unknown" if user.lower() == EMOSPEECH_UNKNOWN_USER else user.lower()[:EMOSPEECH_HASH_CHARS]
    return ParsedName(label, speaker)


# ------------------------------------------------------------------------------------------------------ BAVED
BAVED_LEVELS = {"0": AROUSAL_LABELS[0], "1": AROUSAL_LABELS[1], "2": AROUSAL_LABELS[2]}
_BAVED_RE = re.compile(r"^(\d+)-([mf])-(\d+)-(\d+)-(\d)-(\d+)$", re.IGNORECASE)


def _parse_baved(path: Path) -> ParsedName | str:
    m = _BAVED_RE.match(path.stem)
    if not m:
        return CORPORA["baved"].mismatch()
    speaker, _gender, _age, _word, level, _rec = m.groups()
    if level not in BAVED_LEVELS:
        return f"BAVED level {level} is not 0 (low), 1 (neutral) or 2 (high) in SPK-G-AGE-WORD-LEVEL-REC"
    return ParsedName(BAVED_LEVELS[level], speaker)


#: Supported corpora by canonical name.
CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in (
        CorpusSpec("ravdess", "RAVDESS", "03-01-EE-II-SS-RR-AA.wav", _parse_ravdess),
        CorpusSpec("tess", "TESS", "OAF_word_emotion.wav (or YAF_)", _parse_tess),
        CorpusSpec("crema-d", "CREMA-D", "AAAA_SSS_EEE_II.wav (e.g. 1001_DFA_ANG_XX)", _parse_crema),
        CorpusSpec("savee", "SAVEE", "SP_eNN.wav (e.g. DC_a01, or DC/a01)", _parse_savee),
        CorpusSpec("mesd", "MESD", "Emotion_V_C_word.wav (e.g. Anger_C_A_abajo)", _parse_mesd),
        CorpusSpec("emodb", "EmoDB", "SSTTTEV.wav (e.g. 03a01Fa)", _parse_emodb),
        CorpusSpec("ased", "ASED", "xN-SS-RR-GG-PP.wav (e.g. n1-01-01-02-05)", _parse_ased),
        CorpusSpec("banglaser", "BanglaSER", "MM-SS-EE-II-TT-RR-AA.wav (e.g. 03-01-01-01-01-02-05)", _parse_banglaser),
        CorpusSpec("aesdd", "AESDD", "<emotion folder>/<letter><AA> (<B>)[b].wav (e.g. anger/a05 (3))", _parse_aesdd),
        CorpusSpec("jl", "JL", "<speaker>_<emotion>_<sentence>_<take>.wav (e.g. female1_happy_6b_1)", _parse_jl),
        CorpusSpec("emospeech", "EmoSpeech", "<keyword>-<context>-<emotion>-<timestamp>-<userhash>.wav",
                   _parse_emospeech),
        CorpusSpec("baved", "BAVED", "SPK-G-AGE-WORD-LEVEL-REC.wav (e.g. 101-m-20-3-2-47)", _parse_baved, levels=True),
    )
}
#: Other spellings accepted for corpus names.
ALIASES = {"crema": "crema-d", "cremad": "crema-d", "emo-db": "emodb", "berlin": "emodb", "bangla": "banglaser",
           "jl-corpus": "jl", "emospeech-command": "emospeech"}


def corpus_name(name: str) -> str:
    """Canonical corpus name for ``name`` (case-insensitive, aliases allowed); UserError when unknown."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in CORPORA:
        raise UserError(f"unknown corpus {name!r}: use one of {', '.join(CORPORA)} (e.g. --data ravdess=/data/ravdess)")
    return key


def parse_data_spec(spec: str) -> tuple[str, Path]:
    """``"ravdess=/data/ravdess"`` -> ``("ravdess", Path("/data/ravdess"))``. Does not check the folder exists."""
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise UserError(
            f"--data expects NAME=PATH (e.g. --data ravdess=/data/ravdess), got {spec!r}; "
            f"NAME is one of {', '.join(CORPORA)}"
        )
    return corpus_name(name), Path(path.strip()).expanduser()


def _candidate_files(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def load_corpus(name: str, root: Path | str, keep_calm: bool = False, levels: bool = False) -> LoadResult:
    """Load every audio file under ``root`` (recursively) as a corpus ``name``.

    Calm becomes neutral unless ``keep_calm``. Files whose name does not fit the corpus convention, or whose label
    is outside the label set (EmoDB boredom), become :class:`Problem`s; non-audio and hidden files are ignored.
    Raises UserError when the corpus is unknown, the folder is missing, or it yields no record at all (almost
    always a wrong path or the wrong corpus name). A corpus of arousal levels (BAVED) is refused unless ``levels``.
    """
    corpus = corpus_name(name)
    spec = CORPORA[corpus]
    if spec.levels and not levels:
        raise UserError(f"{spec.title} labels arousal levels (low/neutral/high), not emotions: it cannot train or "
                        f"score an emotion model; leave --data {corpus}=... out")
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise UserError(f"{spec.title} data folder {root} {what}: pass --data {corpus}=PATH with the corpus folder")
    labels = set(AROUSAL_LABELS) if spec.levels else set(label_set(keep_calm))
    extensions = audio_extensions()
    records: list[Record] = []
    problems: list[Problem] = []
    ignored: list[Path] = []
    for path in _candidate_files(root):
        if _is_hidden(path, root) or path.suffix.lower().lstrip(".") not in extensions:
            ignored.append(path)
            continue
        parsed = spec.parse(path)
        if isinstance(parsed, str):
            problems.append(Problem(path, parsed))
            continue
        label = NEUTRAL if parsed.label == CALM and not keep_calm else parsed.label
        if label not in labels:
            problems.append(Problem(path, f"{REASON_NOT_IN_LABEL_SET} ({label})"))
            continue
        records.append(Record(path, label, f"{corpus}:{parsed.speaker}", corpus))
    result = LoadResult(tuple(records), tuple(problems), tuple(ignored))
    if not records:
        hint = f"; e.g. {problems[0].path.name}: {problems[0].reason}" if problems else ""
        raise UserError(
            f"no {spec.title} audio found under {root} ({len(problems)} audio files skipped{hint}): "
            f"check the path and that the corpus name matches its files ({spec.pattern})"
        )
    _log_result(spec, root, result)
    return result


def _log_result(spec: CorpusSpec, root: Path, result: LoadResult) -> None:
    logger.info(
        "%s: %d records, %d speakers from %s",
        spec.title,
        len(result.records),
        len(result.count_by("speaker")),
        root,
    )
    for problem in result.problems:
        logger.debug("skipped %s: %s", problem.path, problem.reason)
    for reason, count in result.problem_counts().items():
        example = next(p.path.name for p in result.problems if p.reason == reason)
        logger.warning("%s: skipped %d file(s): %s (e.g. %s)", spec.title, count, reason, example)
    if result.ignored:
        logger.info("%s: ignored %d non-audio file(s)", spec.title, len(result.ignored))


def load_corpora(specs: Sequence[tuple[str, Path | str]], keep_calm: bool = False) -> LoadResult:
    """Load several corpora (``[("ravdess", path), ("tess", path)]``) into one result.

    A file reached twice (the same folder given twice, or nested folders) is loaded once and the repeat reported,
    so that one clip can never land in both the training and the test split.
    """
    if not specs:
        raise UserError("no training data given: pass --data NAME=PATH at least once (e.g. --data ravdess=PATH)")
    merged = LoadResult()
    for name, root in specs:
        merged = merged.merge(load_corpus(name, root, keep_calm=keep_calm))
    seen: set[Path] = set()
    records: list[Record] = []
    problems = list(merged.problems)
    for record in merged.records:
        key = record.path.resolve()
        if key in seen:
            problems.append(Problem(record.path, REASON_DUPLICATE))
            continue
        seen.add(key)
        records.append(record)
    if len(records) < len(merged.records):
        logger.warning("skipped %d file(s) listed twice", len(merged.records) - len(records))
    return LoadResult(tuple(records), tuple(problems), merged.ignored)


def limit_per_corpus(records: Sequence[Record], limit: int | Mapping[str, int], seed: int) -> list[Record]:
    """At most ``limit`` records of each corpus, drawn at random (seeded), kept in their original order.

    ``limit`` is one number for every corpus, or a mapping corpus -> number (a missing corpus or 0: all of it).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    kept: list[Record] = []
    for corpus in sorted({r.corpus for r in records}):
        mine = [r for r in records if r.corpus == corpus]
        most = limit if isinstance(limit, int) else limit.get(corpus, 0)
        order = rng.permutation(len(mine))
        kept += [mine[i] for i in sorted(order[:most])] if most else mine
    return kept


def parse_limits(specs: Sequence[str]) -> int | dict[str, int]:
    """``--limit`` values: ``["20"]`` -> 20 (every corpus); ``["tess=800", "ased=1000"]`` -> per corpus."""
    per_corpus: dict[str, int] = {}
    overall = 0
    for spec in specs:
        name, sep, number = spec.rpartition("=")
        try:
            value = int(number)
        except ValueError:
            value = -1
        if value < 0:
            raise UserError(f"--limit expects N or NAME=N with N >= 0 (e.g. --limit tess=800), got {spec!r}")
        if sep:
            per_corpus[corpus_name(name)] = value
        else:
            overall = value
    if not per_corpus:
        return overall
    return {name: per_corpus.get(name, overall) for name in CORPORA}


def check_readable(path: Path | str) -> str | None:
    """None when soundfile can open ``path`` and it holds audio; otherwise a one-line reason to report."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError) as err:  # soundfile.LibsndfileError is a RuntimeError
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"cannot be read as audio: {detail}"
    if info.frames <= 0:
        return "holds no audio samples"
    if info.samplerate <= 0:
        return f"invalid sample rate {info.samplerate}"
    return None

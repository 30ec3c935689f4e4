"""Audio files and live blocks -> float32 ``(frames, channels)`` arrays, with one-line errors for bad input.

``read_audio`` reads a whole file, ``iter_audio_blocks`` streams it block by block (the file-replay path), and
``sanitize_block`` normalises a block handed over by a microphone callback or the Python API.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_live.realtime.errors import UserError

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_FRAMES = 4096
SUPPORTED_HINT = "supported: WAV, FLAC, OGG, MP3, AIFF, ..."


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @cached_property
    def declared_frames(self) -> int | None:
        """What a WAV or AIFF header says the data holds (None: no exact length); read only when asked for."""
        return declared_frames(Path(self.path), self.format, self.channels, self.subtype)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def truncation_note(self) -> str:
        """'' unless the header states a longer length than the file holds (a copy or a recording cut short: the
        audio there is scored, the note says what is missing). Formats whose length is an estimate never say so."""
        if self.declared_frames is None or self.declared_frames <= self.frames:
            return ""
        return (f"truncated: its header says {self.declared_frames / self.sample_rate:.2f} s, the file holds "
                f"{self.duration_s:.2f} s")


HEADER_BYTES = 1 << 16  # where a WAV's data chunk or an AIFF's COMM chunk must start to be looked at
UNKNOWN_WAV_SIZE = 0xFFFFFFFF  # a streaming writer's placeholder ("as long as the file")


def declared_frames(path: Path, fmt: str, channels: int, subtype: str) -> int | None:
    """The frames a WAV's ``data`` chunk or an AIFF's ``COMM`` chunk declares (None: another format, a sample size
    that is not fixed, or a header that states no length)."""
    width = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
             "ULAW": 1, "ALAW": 1}.get(subtype)
    if width is None or fmt not in ("WAV", "AIFF"):
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_BYTES)
    except OSError:
        return None
    big = fmt == "AIFF"
    if head[:4] not in (b"RIFF", b"FORM") or len(head) < 12:
        return None
    i = 12
    while i + 8 <= len(head):
        name, size = head[i : i + 4], int.from_bytes(head[i + 4 : i + 8], "big" if big else "little")
        if not big and name == b"data":
            return None if size in (0, UNKNOWN_WAV_SIZE) else size // (width * channels)
        if big and name == b"COMM" and i + 14 <= len(head):
            return int.from_bytes(head[i + 10 : i + 14], "big")
        i += 8 + size + (size & 1)
    return None


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"audio file {p} does not exist; check the path")
    if p.is_dir():
        raise UserError(f"{p} is a directory, not an audio file; pass the path of a file")
    if not os.access(p, os.R_OK):
        raise UserError(f"audio file {p} cannot be read (permission denied); check its permissions")
    mode = p.stat().st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise UserError(f"{p} is a pipe, not an audio file: audio is read from files (it is read more than once); "
                        "write the stream to a file first")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise UserError(f"{p} is a device, not an audio file: pass a recording (for a microphone, leave out --file "
                        "and choose it with --device)")
    if p.stat().st_size == 0:
        raise UserError(f"audio file {p} is empty (0 bytes); record or export it again")
    return p


def _not_audio(p: Path, reason: object) -> UserError:
    logger.debug("soundfile could not read %s: %s", p, reason)
    return UserError(
        f"{p} is not an audio file soundfile can read ({SUPPORTED_HINT}); "
        f"convert it to WAV (e.g. ffmpeg -i IN out.wav) or pass another file"
    )


def _truncated(p: Path, reason: object) -> UserError:
    logger.debug("read error in %s: %s", p, reason)
    return UserError(f"{p} is truncated or corrupt (read failed part-way); re-export or re-record the file")


#: The largest float sample magnitude accepted. Float audio is nominally within [-1, 1], and files written at an
#: integer scale (±32768, ±2^31) are common and fine: the model reads levels relative to the speech. Far beyond
#: this the spectrum's power overflows float32 (measured: verdicts identical up to 1e17, NaN from 1e20).
MAX_ABS_SAMPLE = 1e12


def _non_finite(name: str) -> UserError:
    return UserError(f"{name} contains NaN or infinite samples; re-export it as PCM or clean the samples")


def _check_float(samples: np.ndarray, name: str) -> None:
    """NaN/inf samples, or samples too large to be audio at any usable scale, are a UserError naming ``name``."""
    if not np.isfinite(samples).all():
        raise _non_finite(name)
    peak = float(np.abs(samples).max(initial=0.0))
    if peak > MAX_ABS_SAMPLE:
        raise UserError(
            f"{name} has samples of magnitude {peak:.3g}, far beyond the [-1, 1] of float audio (limit "
            f"±{MAX_ABS_SAMPLE:.0e}); rescale it (e.g. divide by its peak) or re-export it as PCM"
        )


#: Below this a header's sample rate cannot be a speech recording's (telephone audio is 8 kHz).
MIN_SAMPLE_RATE = 1000


def _empty(p: Path) -> UserError:
    return UserError(f"{p} contains no audio (0 frames: empty or truncated); pass a file that holds sound")


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Header information of ``path``; raises ``UserError`` when it is missing, unreadable or empty."""
    p = _check_path(path)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise _not_audio(p, err) from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise _not_audio(p, f"samplerate={info.samplerate} channels={info.channels}")
    if info.samplerate < MIN_SAMPLE_RATE:  # a lying header: 10 s of 16 kHz audio read as 44 hours at 1 Hz
        raise UserError(f"{p} says its sample rate is {info.samplerate} Hz, below any speech recording's "
                        f"({MIN_SAMPLE_RATE} Hz at least): its header is wrong; re-export the file")
    if info.frames <= 0:
        raise _empty(p)
    return AudioInfo(
        path=str(p),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        format=str(info.format),
        subtype=str(info.subtype),
    )


# soundfile's format names that are not also the usual file extensions; RAW is headerless: any file would "match"
EXTRA_AUDIO_EXTENSIONS = ("aif", "aifc", "oga", "opus", "wave")
IGNORED_FORMATS = ("RAW",)


def audio_extensions() -> frozenset[str]:
    """Lower-case extensions (no dot) of the formats this soundfile/libsndfile build reads."""
    formats = {name.lower() for name in sf.available_formats() if name not in IGNORED_FORMATS}
    return frozenset(formats | set(EXTRA_AUDIO_EXTENSIONS))


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Whole file as float32 ``(frames, channels)`` in [-1, 1] plus its sample rate."""
    info = audio_info(path)
    p = Path(info.path)
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise _truncated(p, err) from None
    if data.shape[0] == 0:
        raise _empty(p)
    _check_float(data, str(p))
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def iter_audio_blocks(path: str | os.PathLike[str], block_frames: int = DEFAULT_BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Stream ``path`` as float32 ``(n, channels)`` blocks of ``block_frames`` (the last one shorter).

    The file is checked (exists, readable, not empty) when this is *called*; NaN/inf samples and read failures
    part-way through raise ``UserError`` from the block where they occur.
    """
    if isinstance(block_frames, bool) or not isinstance(block_frames, int | np.integer) or block_frames <= 0:
        raise UserError(f"block size must be a positive number of frames, got {block_frames!r}")
    info = audio_info(path)
    return _blocks(Path(info.path), int(block_frames))


def _blocks(p: Path, block_frames: int) -> Iterator[np.ndarray]:
    total = 0
    try:
        with sf.SoundFile(str(p)) as f:
            while True:
                try:
                    block = f.read(block_frames, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, ValueError) as err:
                    raise _truncated(p, err) from None
                if block.shape[0] == 0:
                    break
                _check_float(block, str(p))
                total += block.shape[0]
                yield np.ascontiguousarray(block, dtype=np.float32)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise _not_audio(p, err) from None
    if total == 0:
        raise _empty(p)


def sanitize_block(block: object, name: str = "audio block") -> np.ndarray:
    """A live block as float32 ``(n, channels)``: integer PCM scaled to [-1, 1), 1-D taken as mono.

    Raises ``UserError`` for NaN/inf samples, non-numeric data or more than two dimensions.
    """
    arr = np.asarray(block)
    if arr.ndim == 0 or arr.ndim > 2:
        raise UserError(f"{name} must be a 1-D (mono) or 2-D (frames, channels) array, got shape {arr.shape}")
    if arr.ndim == 1:
        arr = arr[:, np.newaxis]
    kind = arr.dtype.kind
    if kind == "f":
        out = arr.astype(np.float32, copy=False)
        _check_float(out, name)
    elif kind == "i":
        # int8/int16/int32 full scale -> [-1, 1)
        out = (arr.astype(np.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))).astype(np.float32)
    elif kind == "u":
        half = float(2 ** (8 * arr.dtype.itemsize - 1))
        out = ((arr.astype(np.float64) - half) / half).astype(np.float32)
    elif kind == "b":
        raise UserError(f"{name} is boolean, not audio; pass float or integer PCM samples")
    else:
        raise UserError(f"{name} has dtype {arr.dtype}, not audio; pass float or integer PCM samples")
    return np.ascontiguousarray(out)

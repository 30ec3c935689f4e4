"""Each emotion's colour, shared by the live dashboard and the session report (rich colour names; the report maps
them to matplotlib's)."""

from __future__ import annotations

from collections.abc import Sequence

UNCERTAIN_LABEL = "uncertain"
UNCERTAIN_COLOR = "grey50"

LABEL_COLORS: dict[str, str] = {
    "angry": "red",
    "disgust": "green",
    "fearful": "magenta",
    "happy": "yellow",
    "neutral": "white",
    "sad": "blue",
    "surprised": "cyan",
    "calm": "bright_blue",
}
FALLBACK_COLORS = ("bright_red", "bright_green", "bright_magenta", "bright_yellow", "bright_cyan", "grey70")


def label_color(label: str, labels: Sequence[str] = ()) -> str:
    """The fixed colour of an emotion; labels outside the known set get a stable fallback colour."""
    if label == UNCERTAIN_LABEL:
        return UNCERTAIN_COLOR
    if label in LABEL_COLORS:
        return LABEL_COLORS[label]
    unknown = [lab for lab in labels if lab not in LABEL_COLORS]
    index = unknown.index(label) if label in unknown else sum(map(ord, label))
    return FALLBACK_COLORS[index % len(FALLBACK_COLORS)]

"""Personal profiles: the model's last layer re-fitted on a few labelled takes of one speaker (numpy only).

A ser-live model exported with an ``embedding`` output (``ser-export``) says what feeds its classifier and what that
classifier is: ``probs = softmax(embedding @ W0 + b0)`` (:class:`realtime.model.EmbeddingInfo`). A profile keeps
the network as it is and replaces ``W0, b0`` by a layer fitted on the user's own takes (a take = one recorded
example of one emotion; its windows go through the live engine's path, so they are exactly what the monitor sees):

- ``softmax`` (the default): regularised softmax regression on the takes' window embeddings, started from and pulled
  towards ``W0, b0`` (penalty ``strength / 2 * ||(W - W0) r||^2 + ||b - b0||^2``, ``r`` the embeddings' RMS norm),
  each take weighing the same and each enrolled label the same; the strength is chosen by leave-one-take-out on the
  user's own takes from :data:`STRENGTHS`, where ``inf`` means "keep the base layer" (only takes whose emotion
  has another take can check a fit; with one take per emotion the setting is fixed, :data:`UNCHECKED_SETTINGS`);
- ``prototypes``: each enrolled label's mean embedding, scored by negative squared distance / temperature (a linear
  layer too), the temperature chosen by leave-one-take-out;
- ``blend``: ``(1 - a) * base logits + a * prototype logits``, ``a`` and the temperature chosen the same way.

Labels the user did not enrol keep the base model's column (their logits are the base model's; they can still
win). Every method gives one linear layer, so a profile is applied as ``softmax(embedding @ W + b)`` per window:
microseconds. The windows of one take are never split between fitting and scoring.

At fit time the profile measures itself: leave-one-take-out UAR/accuracy of the chosen fit next to the base model's
on the same takes; when the base model does better the fit keeps the base layer and says so (``warning``).

A profile is a small JSON file (no pickle), written atomically, bound to one model file by its name and sha256.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ser_live.realtime.errors import UserError
from ser_live.realtime.fileio import JsonTooDeepError, loads_json, save_json
from ser_live.realtime.model import EmotionModel, no_embedding_message

logger = logging.getLogger(__name__)

PROFILE_FORMAT = "ser-live-profile"
PROFILE_VERSION = 1
MAX_PROFILE_BYTES = 8 * 2**20
MAX_ENROLLED_TAKES = 10_000  # takes one label may count in a profile (an enrolment records tens)
METHOD_SOFTMAX = "softmax"
METHOD_PROTOTYPES = "prototypes"
METHOD_BLEND = "blend"
METHODS: tuple[str, ...] = (METHOD_SOFTMAX, METHOD_PROTOTYPES, METHOD_BLEND)
DEFAULT_METHOD = METHOD_SOFTMAX
# Pull towards the base layer (in units of the embeddings' RMS norm); inf = the base layer itself. Leave-one-take-out
# picks among these; ties (frequent with a few takes) go to the one nearest DEFAULT_STRENGTH, the best single strength
# on held-out speakers of two corpora (scripts/profile_gain.py, the model card). Only takes whose emotion has another
# take are scored (fit()); with one take per emotion there is nothing to score, and UNCHECKED_SETTINGS applies.
STRENGTHS: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, math.inf)
DEFAULT_STRENGTH = 0.01
# With one take per emotion nothing can be checked: a fixed setting, the best single one at k = 1 on speakers the
# bundled model was not tested on (its validation speakers, and ASED speakers under its leave-ASED-out twin;
# the model card): softmax 0.03. No safety net (nothing to compare with the base layer), so the card gives the
# spread. The prototype and blend entries are those methods' middle settings, not tuned (neither is the default).
UNCHECKED_SETTINGS: dict[str, dict[str, float]] = {
    METHOD_SOFTMAX: {"strength": 0.03},
    METHOD_PROTOTYPES: {"temperature": 1.0},
    METHOD_BLEND: {"temperature": 1.0, "blend": 0.5},
}
# Prototype temperature, as a multiple of the mean squared distance of a take to its own label's prototype.
TEMPERATURES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
BLEND_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 0.75)
DEFAULT_STEPS = 200
MIN_TAKES = 2  # below this nothing can be left out
WORSE_THAN_BASE_POINTS = 2.0  # the fit says so when its own measure is below the base model's by more than this
ACCURACY_DECIMALS = 4


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Take:
    """One labelled example: the embeddings of its classified windows ``(windows, size)``."""

    label: str
    embeddings: np.ndarray
    source: str = ""


@dataclass(frozen=True)
class Base:
    """The model's own last layer: ``labels`` in order, ``weights (size, n)``, ``bias (n,)``."""

    labels: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def of(cls, model: EmotionModel) -> Base:
        info = model.info.embedding
        if info is None:
            raise UserError(no_embedding_message(model))
        return cls(model.labels, info.weights, info.bias)


@dataclass(frozen=True)
class Layer:
    """A fitted last layer and the setting that made it."""

    weights: np.ndarray
    bias: np.ndarray
    method: str
    setting: dict[str, float] = field(default_factory=dict)

    def probs(self, embeddings: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(embeddings, dtype=np.float64) @ self.weights + self.bias)


# --- fitting -------------------------------------------------------------------------------------------------------


def _stack(takes: Sequence[Take], base: Base) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows ``X``, label index ``y`` and weight ``w`` (each take the same, each enrolled label the same)."""
    index = {label: i for i, label in enumerate(base.labels)}
    per_label: dict[str, int] = {}
    for take in takes:
        per_label[take.label] = per_label.get(take.label, 0) + 1
    xs, ys, ws = [], [], []
    for take in takes:
        n = len(take.embeddings)
        xs.append(np.asarray(take.embeddings, dtype=np.float64))
        ys.append(np.full(n, index[take.label]))
        ws.append(np.full(n, 1.0 / (n * per_label[take.label] * len(per_label))))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


def _scale(takes: Sequence[Take]) -> float:
    """RMS norm of the takes' window embeddings (1 when they are all zero)."""
    x = np.concatenate([t.embeddings for t in takes]).astype(np.float64)
    r = float(np.sqrt(np.mean(np.sum(x * x, axis=1))))
    return r if r > 0 and math.isfinite(r) else 1.0


def fit_softmax(
    takes: Sequence[Take], base: Base, strength: float, steps: int = DEFAULT_STEPS, scale: float | None = None
) -> Layer:
    """Softmax regression started from and pulled towards the base layer (``strength`` inf: the base layer).
    Columns of labels without a take stay the base model's. Deterministic (full-batch accelerated gradient)."""
    if math.isinf(strength) or not takes:
        return Layer(base.weights.copy(), base.bias.copy(), METHOD_SOFTMAX, {"strength": math.inf})
    r = _scale(takes) if scale is None else scale
    x, y, w = _stack(takes, base)
    x = x / r  # fit in units of the embeddings' norm: one strength grid fits every model
    n_labels = len(base.labels)
    free = np.zeros(n_labels, dtype=bool)
    free[np.unique(y)] = True
    onehot = np.eye(n_labels)[y]
    w0, b0 = base.weights * r, base.bias.copy()
    # step 1/L: the softmax loss has curvature <= 1/2 per unit of ||x||^2 (weighted), the penalty adds strength
    lipschitz = 0.5 * (float(np.sum(w * np.sum(x * x, axis=1))) + 1.0) + strength
    step = 1.0 / lipschitz
    wt, bt = w0.copy(), b0.copy()
    wy, by = wt.copy(), bt.copy()
    t = 1.0
    for _ in range(steps):
        p = softmax(x @ wy + by)
        g = (p - onehot) * w[:, None]
        grad_w = x.T @ g + strength * (wy - w0)
        grad_b = g.sum(axis=0) + strength * (by - b0)
        grad_w[:, ~free] = 0.0
        grad_b[~free] = 0.0
        w_next, b_next = wy - step * grad_w, by - step * grad_b
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum = (t - 1.0) / t_next
        wy, by = w_next + momentum * (w_next - wt), b_next + momentum * (b_next - bt)
        wt, bt, t = w_next, b_next, t_next
    weights = wt / r
    weights[:, ~free], bt[~free] = base.weights[:, ~free], base.bias[~free]  # exactly the base model's columns
    return Layer(weights, bt, METHOD_SOFTMAX, {"strength": float(strength)})


def _prototypes(takes: Sequence[Take], base: Base) -> tuple[dict[int, np.ndarray], float]:
    """Each enrolled label's prototype (mean of its takes' mean embeddings) and the mean squared distance of a
    take's mean to its own prototype (the natural temperature; 1 when it is 0)."""
    index = {label: i for i, label in enumerate(base.labels)}
    means: dict[int, list[np.ndarray]] = {}
    for take in takes:
        means.setdefault(index[take.label], []).append(np.mean(take.embeddings, axis=0))
    protos = {c: np.mean(v, axis=0) for c, v in means.items()}
    spread = [float(np.sum((m - protos[c]) ** 2)) for c, v in means.items() for m in v]
    natural = float(np.mean(spread)) if spread and np.mean(spread) > 0 else 0.0
    if natural <= 0:  # one take per label: the distances between prototypes set the scale instead
        centres = np.stack(list(protos.values()))
        gaps = np.sum((centres[:, None] - centres[None]) ** 2, axis=-1)
        natural = float(np.mean(gaps[gaps > 0])) if np.any(gaps > 0) else 1.0
    return protos, natural


def fit_prototypes(takes: Sequence[Take], base: Base, temperature: float, blend: float = 1.0) -> Layer:
    """Prototype logits ``-||e - mu||^2 / T`` (``T = temperature x`` the natural spread) as a linear layer, mixed
    ``blend`` : ``1 - blend`` with the base logits (1 = prototypes alone). Labels without a take keep the base
    column (scaled by ``1 - blend`` when blending)."""
    if not takes:
        return Layer(base.weights.copy(), base.bias.copy(), METHOD_PROTOTYPES)
    protos, natural = _prototypes(takes, base)
    tau = temperature * natural
    proto_w, proto_b = base.weights.copy(), base.bias.copy()
    for c, mu in protos.items():
        # -||e - mu||^2 / tau = (2 e.mu - ||mu||^2) / tau - ||e||^2 / tau; the last term is the same for every label
        proto_w[:, c] = 2.0 * mu / tau
        proto_b[c] = -float(mu @ mu) / tau
    if blend >= 1.0:
        return Layer(proto_w, proto_b, METHOD_PROTOTYPES, {"temperature": temperature})
    weights = (1.0 - blend) * base.weights + blend * proto_w
    bias = (1.0 - blend) * base.bias + blend * proto_b
    for c in range(len(base.labels)):
        if c not in protos:  # keep the base logit of a label not enrolled at its own scale
            weights[:, c], bias[c] = base.weights[:, c], base.bias[c]
    return Layer(weights, bias, METHOD_BLEND, {"temperature": temperature, "blend": blend})


def candidate_settings(method: str) -> list[dict[str, float]]:
    if method == METHOD_SOFTMAX:
        return [{"strength": s} for s in STRENGTHS]
    if method == METHOD_PROTOTYPES:
        return [{"temperature": t} for t in TEMPERATURES]
    if method == METHOD_BLEND:
        return [{"temperature": t, "blend": a} for t in TEMPERATURES for a in BLEND_WEIGHTS]
    raise UserError(f"unknown profile method {method!r}: use one of {', '.join(METHODS)}")


def fit_layer(takes: Sequence[Take], base: Base, method: str, setting: Mapping[str, float]) -> Layer:
    if method == METHOD_SOFTMAX:
        return fit_softmax(takes, base, float(setting["strength"]))
    if method == METHOD_PROTOTYPES:
        return fit_prototypes(takes, base, float(setting["temperature"]))
    if method == METHOD_BLEND:
        return fit_prototypes(takes, base, float(setting["temperature"]), float(setting["blend"]))
    raise UserError(f"unknown profile method {method!r}: use one of {', '.join(METHODS)}")


def take_verdict(probs: np.ndarray) -> int:
    """A take's verdict: the label of the mean of its windows' probabilities (as a clip's in ser-live)."""
    return int(np.argmax(np.mean(probs, axis=0)))


def scores(truth: Sequence[int], predicted: Sequence[int], classes: Sequence[int]) -> dict[str, float]:
    """Accuracy and UAR (mean recall over ``classes``, the labels present in ``truth``)."""
    t, p = np.asarray(truth), np.asarray(predicted)
    recalls = [float(np.mean(p[t == c] == c)) for c in classes if np.any(t == c)]
    return {
        "accuracy": float(np.mean(t == p)) if len(t) else 0.0,
        "uar": float(np.mean(recalls)) if recalls else 0.0,
    }


def leave_one_take_out(
    takes: Sequence[Take], base: Base, method: str, setting: Mapping[str, float], only: Sequence[int] | None = None
) -> np.ndarray:
    """Each take's mean window probabilities ``(takes, n_labels)`` by a layer fitted on all the *other* takes (its
    own windows never seen); ``only``: just the takes with these indices, in that order."""
    out = []
    for i in range(len(takes)) if only is None else only:
        rest = [t for j, t in enumerate(takes) if j != i]
        out.append(np.mean(fit_layer(rest, base, method, setting).probs(takes[i].embeddings), axis=0))
    return np.asarray(out)


def _log_loss(probs: np.ndarray, truth: Sequence[int]) -> float:
    """Mean negative log-probability of each take's true label, each label weighing the same."""
    t = np.asarray(truth)
    nll = -np.log(np.clip(probs[np.arange(len(t)), t], 1e-12, 1.0))
    return float(np.mean([np.mean(nll[t == c]) for c in np.unique(t)]))


def _distance_to_default(setting: Mapping[str, float]) -> float:
    strength = setting.get("strength")
    if strength is None:
        return 0.0
    return math.inf if math.isinf(strength) else abs(math.log(strength / DEFAULT_STRENGTH))


@dataclass(frozen=True)
class FitResult:
    layer: Layer
    own: dict[str, float]  # leave-one-take-out scores of the chosen setting
    base: dict[str, float]  # the base model on the same takes
    tried: list[dict[str, Any]]
    warning: str | None = None
    checked: int = 0  # takes that checked the fit (their emotion has another take); 0: a fixed setting, unchecked


def fit(takes: Sequence[Take], base: Base, method: str = DEFAULT_METHOD) -> FitResult:
    """Choose the setting by leave-one-take-out UAR on the takes (ties: the one nearer the base layer), fit it on
    all of them, and measure it against the base model on the same takes."""
    if method not in METHODS:
        raise UserError(f"unknown profile method {method!r}: use one of {', '.join(METHODS)}")
    known = set(base.labels)
    for take in takes:
        if take.label not in known:
            raise UserError(f"take {take.source or '?'} is labelled {take.label!r}, which the model does not know: "
                            f"use one of {', '.join(base.labels)}")
        if take.embeddings.ndim != 2 or len(take.embeddings) == 0 or take.embeddings.shape[1] != len(base.weights):
            raise UserError(f"take {take.source or '?'} has no window embeddings of the model's size")
    if len(takes) < MIN_TAKES:
        raise UserError(f"{len(takes)} take(s) is too few to fit and check a profile: record at least {MIN_TAKES}")
    index = {label: i for i, label in enumerate(base.labels)}
    truth = [index[t.label] for t in takes]
    counts = {c: truth.count(c) for c in set(truth)}
    # Only a take whose emotion keeps another take when it is left out can check a fit: leaving out the only take of
    # an emotion leaves that emotion to the base layer and scores the base layer, not the fit (it made leave-one-out
    # choose the base layer for most one-take-per-emotion profiles).
    checked = [i for i, c in enumerate(truth) if counts[c] >= MIN_TAKES]
    scored = checked or list(range(len(takes)))
    truth_s = [truth[i] for i in scored]
    classes = sorted(set(truth_s))
    base_probs = np.asarray([np.mean(softmax(takes[i].embeddings @ base.weights + base.bias), axis=0)
                             for i in scored])
    base_scores = scores(truth_s, list(np.argmax(base_probs, axis=1)), classes) | {
        "log_loss": _log_loss(base_probs, truth_s)}
    tried: list[dict[str, Any]] = []
    candidates = candidate_settings(method) if checked else [UNCHECKED_SETTINGS[method]]
    best: tuple[float, float] | None = None
    best_setting: dict[str, float] = {}
    own_scores = base_scores
    for setting in candidates:
        probs = leave_one_take_out(takes, base, method, setting, only=scored)
        own = scores(truth_s, list(np.argmax(probs, axis=1)), classes) | {"log_loss": _log_loss(probs, truth_s)}
        tried.append({**setting, **own})
        # higher UAR first; among equal UARs the setting nearest the default (softmax) or the first (the others)
        key = (own["uar"], -_distance_to_default(setting))
        if best is None or key > best:
            best, best_setting, own_scores = key, dict(setting), own
    layer = fit_layer(takes, base, method, best_setting)
    warning = None
    if not checked:
        fixed = ", ".join(f"{k} {v:g}" for k, v in best_setting.items())
        return FitResult(layer, own_scores, base_scores, tried,
                         f"one take per emotion: the profile uses a fixed setting ({fixed}) and cannot be checked on "
                         "your own takes (leaving the only take of an emotion out leaves it to the base model); "
                         f"record at least {MIN_TAKES} per emotion", checked=0)
    if 100 * (own_scores["uar"] - base_scores["uar"]) < -WORSE_THAN_BASE_POINTS and method != METHOD_SOFTMAX:
        warning = (f"the {method} profile scored {100 * own_scores['uar']:.0f} % UAR on your takes (left out one at "
                   f"a time) against the base model's {100 * base_scores['uar']:.0f} %: use the softmax method")
    elif method == METHOD_SOFTMAX and math.isinf(best_setting.get("strength", 0.0)):
        warning = ("re-fitting did not beat the base model on your takes (left out one at a time): the profile keeps "
                   "the base model's layer; record more or clearer takes")
    return FitResult(layer, own_scores, base_scores, tried, warning, checked=len(checked))


# --- the profile file ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A fitted personal layer for one model file. ``probs(embeddings)`` replaces the model's last layer."""

    name: str
    model_name: str
    model_sha256: str
    labels: tuple[str, ...]
    enrolled: dict[str, int]
    layer: Layer
    created: str = ""
    accuracy: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None
    source: str = ""

    def probs(self, embeddings: np.ndarray) -> np.ndarray:
        return self.layer.probs(embeddings).astype(np.float32)

    def check_model(self, model: EmotionModel) -> None:
        """UserError unless ``model`` is the file this profile was fitted for (same bytes), or a file that says it
        computes the same function as that one (``EmotionModel.profile_sha256s``)."""
        where = self.source or self.name
        if tuple(model.labels) != self.labels:
            raise UserError(f"profile {where} was made for model {self.model_name} with labels "
                            f"{', '.join(self.labels)}, not {model.path.name}: pass --model {self.model_name}.onnx "
                            "or enrol again with this model")
        if self.model_sha256 not in model.profile_sha256s:
            raise UserError(f"profile {where} was made for another model file ({self.model_name}, sha256 "
                            f"{self.model_sha256[:12]}…), not {model.path.name} ({model.sha256[:12]}…): use that "
                            "model or enrol again with this one")
        size = None if model.info.embedding is None else model.info.embedding.size
        if size is not None and self.layer.weights.shape[0] != size:  # a hand-edited or damaged file
            raise UserError(f"profile {where} has a layer for {self.layer.weights.shape[0]}-value embeddings, but "
                            f"{model.path.name} gives {size}: fit it again with ser-profile fit or ser-live --enroll")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "name": self.name,
            "model": {"name": self.model_name, "sha256": self.model_sha256, "labels": list(self.labels)},
            "enrolled": dict(self.enrolled),
            "unenrolled_labels": "keep the base model's logits",
            "method": self.layer.method,
            "setting": {k: (None if math.isinf(v) else v) for k, v in self.layer.setting.items()},
            "weights": self.layer.weights.tolist(),
            "bias": self.layer.bias.tolist(),
            "created": self.created,
            "accuracy": self.accuracy,
            "warning": self.warning,
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "profile") -> Profile:
        fix = "fit it again with ser-profile fit or ser-live --enroll"
        if not isinstance(d, Mapping) or d.get("format") != PROFILE_FORMAT:
            raise UserError(f"{source} is not a ser-live profile (no \"format\": \"{PROFILE_FORMAT}\"): {fix}")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UserError(f"{source} has no valid profile version ({version!r}): {fix}")
        if version > PROFILE_VERSION:
            raise UserError(f"{source} is profile format {version!r}; this ser-live reads up to {PROFILE_VERSION}: "
                            "upgrade ser-live")
        try:
            model = d["model"]
            labels = tuple(str(x) for x in model["labels"])
            weights = np.asarray(_numbers(d["weights"], "weights"), dtype=np.float64)
            bias = np.asarray(_numbers(d["bias"], "bias"), dtype=np.float64)
            setting = {str(k): (math.inf if v is None else float(_numbers(v, f"setting {k}")))
                       for k, v in _mapping(d.get("setting"), "setting").items()}
            enrolled = {str(k): _count(v, f"enrolled {k}") for k, v in _mapping(d.get("enrolled"), "enrolled").items()}
            accuracy = _accuracy(d.get("accuracy"))
            method = str(d["method"])
            profile = cls(
                name=str(d.get("name", "")),
                model_name=str(model["name"]),
                model_sha256=str(model["sha256"]),
                labels=labels,
                enrolled=enrolled,
                layer=Layer(weights, bias, method, setting),
                created=str(d.get("created", "")),
                accuracy=accuracy,
                warning=None if d.get("warning") is None else str(d["warning"]),
                source=source,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise UserError(f"{source} is not a valid profile ({type(err).__name__}: {err}): {fix}") from None
        if method not in METHODS:
            raise UserError(f"{source} names an unknown method {method!r}: {fix}")
        if weights.ndim != 2 or weights.shape[1] != len(labels) or bias.shape != (len(labels),):
            raise UserError(f"{source}: its layer has shape {weights.shape} / {bias.shape} for {len(labels)} "
                            f"labels: {fix}")
        if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(bias))):
            raise UserError(f"{source}: its layer has NaN or infinite values: {fix}")
        unknown = sorted(set(enrolled) - set(labels))
        if unknown:
            raise UserError(f"{source} enrols labels the model lacks ({', '.join(unknown)}): {fix}")
        return profile

    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write atomically; refuses to replace an existing file unless ``overwrite``."""
        target = Path(path).expanduser()
        check_output(target, overwrite)
        return save_json(target, self.to_dict(), "profile")

    @property
    def uar_step_points(self) -> float | None:
        """How far one take moves the leave-one-take-out UAR (points): its label's recall changes by one over that
        label's takes, and UAR averages the checked labels (those with two takes or more); None without any."""
        counts = [n for n in self.enrolled.values() if n >= MIN_TAKES]
        return 100.0 / (min(counts) * len(counts)) if counts else None

    def describe(self) -> str:
        acc = self.accuracy
        lines = [
            f"profile {self.name or '(unnamed)'} for model {self.model_name} (sha256 {self.model_sha256[:12]}…)",
            f"  method {self.layer.method} " + ", ".join(
                f"{k} {'inf (base layer)' if math.isinf(v) else f'{v:g}'}" for k, v in self.layer.setting.items()),
            "  enrolled: " + (", ".join(f"{k} ×{v}" for k, v in self.enrolled.items()) or "nothing"),
            "  not enrolled (base model's scores): "
            + (", ".join(lab for lab in self.labels if lab not in self.enrolled) or "none"),
        ]
        if acc.get("profile") and acc.get("base") and acc.get("checked_takes", 1):
            checked = acc.get("checked_takes", acc.get("takes", "?"))
            lines.append(
                f"  on {checked} of its own {acc.get('takes', '?')} takes (left out one at a time): UAR "
                f"{100 * acc['profile']['uar']:.1f} % vs base {100 * acc['base']['uar']:.1f} %, accuracy "
                f"{100 * acc['profile']['accuracy']:.1f} % vs {100 * acc['base']['accuracy']:.1f} %"
            )
            step = self.uar_step_points
            if step is not None:
                lines.append(f"  (one take moves that UAR by up to {step:.0f} points: a smaller difference is not "
                             "measured, and on other speech the profile can still come out a few points worse)")
        if self.created:
            lines.append(f"  created {self.created}")
        if self.warning:
            lines.append(f"  note: {self.warning}")
        return "\n".join(lines)


def _numbers(value: Any, what: str) -> Any:
    """``value`` (a number or nested lists of numbers) as it is; ValueError naming ``what`` for anything else
    (booleans and strings included, which numpy would silently turn into numbers)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"{what} holds {type(item).__name__} values where numbers belong")
    return value


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be an object, not {type(value).__name__}")
    return value


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number of takes, not {value!r:.40}")
    if not 0 < value <= MAX_ENROLLED_TAKES:
        shown = str(value) if abs(value) < 10**12 else f"a {len(str(abs(value)))}-digit number of"
        raise ValueError(f"{what} counts {shown} takes (1 to {MAX_ENROLLED_TAKES})")
    return value


def _accuracy(value: Any) -> dict[str, Any]:
    """The profile's own check (what ``show`` prints): counts are whole numbers, scores numbers in 0..1."""
    acc = dict(_mapping(value, "accuracy"))
    for key in ("takes", "checked_takes", "windows"):
        if key in acc and (isinstance(acc[key], bool) or not isinstance(acc[key], int) or acc[key] < 0):
            raise ValueError(f"accuracy {key} must be a whole number, not {acc[key]!r:.40}")
    for key in ("profile", "base"):
        if key in acc:
            part = _mapping(acc[key], f"accuracy {key}")
            for name in ("uar", "accuracy"):
                score = part.get(name, 0.0)
                if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
                    raise ValueError(f"accuracy {key} {name} must be a number in 0..1, not {score!r:.40}")
    return acc


def check_output(target: Path, overwrite: bool) -> None:
    if target.is_dir():
        raise UserError(f"{target} is a folder: give the profile a file name such as {target / 'me.json'}")
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists: choose another name, or pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise UserError(f"cannot write {target}: folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {target}: folder {target.parent} is not writable; choose another path")


def load_profile(path: str | os.PathLike[str]) -> Profile:
    source = Path(path).expanduser()
    if not source.is_file():
        raise UserError(f"profile {source} not found: make one with ser-live --enroll {source} or ser-profile fit")
    if source.stat().st_size > MAX_PROFILE_BYTES:  # a profile is tens of kilobytes; parsing 100 MB takes gigabytes
        raise UserError(f"profile {source} is {source.stat().st_size / 2**20:.0f} MiB, far larger than a profile "
                        f"(at most {MAX_PROFILE_BYTES // 2**20} MiB): it is not one; fit it again")
    try:
        data = loads_json(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
        why = str(err) if isinstance(err, JsonTooDeepError) else type(err).__name__
        raise UserError(f"profile {source} is not readable JSON ({why}): fit it again") from None
    return Profile.from_dict(data, str(source))


def make_profile(
    model: EmotionModel, takes: Sequence[Take], name: str = "", method: str = DEFAULT_METHOD
) -> Profile:
    """Fit a profile for ``model`` on ``takes`` (see :func:`fit`)."""
    result = fit(takes, Base.of(model), method)
    enrolled: dict[str, int] = {}
    for take in takes:
        enrolled[take.label] = enrolled.get(take.label, 0) + 1
    r4 = {k: round(v, ACCURACY_DECIMALS) for k, v in result.own.items()}
    b4 = {k: round(v, ACCURACY_DECIMALS) for k, v in result.base.items()}
    return Profile(
        name=name,
        model_name=model.path.stem,
        model_sha256=model.sha256,
        labels=tuple(model.labels),
        enrolled={lab: enrolled[lab] for lab in model.labels if lab in enrolled},
        layer=result.layer,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        accuracy={"protocol": "leave-one-take-out", "takes": len(takes), "checked_takes": result.checked,
                  "profile": r4, "base": b4,
                  "windows": int(sum(len(t.embeddings) for t in takes))},
        warning=result.warning,
    )


# --- takes from audio ----------------------------------------------------------------------------------------------


def window_features(model: EmotionModel, samples: np.ndarray, sample_rate: int, config: Any = None) -> np.ndarray:
    """The features of a clip's classified windows, cut as the live engine cuts them (resample, speech gate,
    windows, input normalisation): ``(windows, *feature_shape)``, possibly empty."""
    from ser_live.realtime.config import EngineConfig
    from ser_live.realtime.sources.audio import sanitize_block
    from ser_live.realtime.stages.pipeline import FeaturePipeline

    cfg = (config or EngineConfig()).pipeline_config(model)
    pipeline = FeaturePipeline(cfg, int(sample_rate), input_norm=model.info.input_norm, encoder=model.encoder)
    block = max(1, int(sample_rate))
    out = pipeline.run(sanitize_block(np.asarray(samples)), block=block)
    feats = [w.features for w in out if w.features is not None]
    if not feats:
        return np.zeros((0, *model.info.feature_shape), dtype=np.float32)
    return np.stack(feats).astype(np.float32)


def take_from_audio(
    model: EmotionModel, samples: np.ndarray, sample_rate: int, label: str, source: str = "", config: Any = None
) -> Take | None:
    """A take's window embeddings (None when no window holds enough speech)."""
    feats = window_features(model, samples, sample_rate, config)
    if len(feats) == 0:
        return None
    return Take(label=label, embeddings=model.embed(feats).astype(np.float64), source=source)

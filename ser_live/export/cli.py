"""``ser-export``: a ser-train run (or a .keras file + config) -> one parity-checked ser-live ONNX model."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ser_live.export import DEFAULT_OPSET, EXPORT_MODULES, PARITY_TOLERANCE, QUANTIZE_CHOICES
from ser_live.realtime.errors import UserError
from ser_live.realtime.tooling import require_modules, run_tool

if TYPE_CHECKING:  # pragma: no cover
    from ser_live.export.onnx_export import ExportReport

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# Libraries that log a lot at INFO/WARNING while converting; kept at ERROR unless --verbose.
NOISY_LOGGERS: tuple[str, ...] = ("tf2onnx", "tensorflow", "absl", "onnxruntime")
KIB = 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser-export",
        description="Convert a ser-train run (model.keras + config.json) into one self-describing ONNX model "
        "for ser-live: standardisation folded in, metadata, an embedding output for personal profiles, "
        "parity-checked, written atomically. Given a ser-live .onnx file instead, bring it up to date with the same "
        "weights: add the embedding output (with --quantize int8 also to its NAME.int8.onnx beside it) and fold "
        "batch normalisation into its convolutions.",
    )
    parser.add_argument(
        "source",
        type=Path,
        metavar="SOURCE",
        help="run directory made by ser-train, a .keras file (then give --config), or a ser-live .onnx model to "
        "bring up to date (embedding output, batch normalisation folded; weights unchanged)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="output model file, e.g. models/NAME.onnx"
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset to target (default: %(default)s)")
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default=None,
        help="also write a dynamically quantised NAME.int8.onnx (default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="config.json of the run (default: %(default)s = the one in the run directory)",
    )
    parser.add_argument("--overwrite", action="store_true",
                        help="with a .onnx SOURCE: replace OUT if it exists (never the input itself)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and library messages")
    return parser


class _QuietRootFilter(logging.Filter):
    """Drop sub-ERROR records logged straight on the root logger by libraries (onnxruntime's quantiser advice)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.ERROR


def setup_logging(verbose: bool) -> None:
    """Console logging for the command (left alone when the host, e.g. pytest, configured logging already)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    root = logging.getLogger()
    if root.handlers:
        return
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=LOG_FORMAT)
    if not verbose:
        for handler in root.handlers:
            handler.addFilter(_QuietRootFilter())
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / KIB:.1f} KiB" if n_bytes < KIB * KIB else f"{n_bytes / KIB / KIB:.2f} MiB"


def format_report(report: ExportReport) -> str:
    """A few plain lines: what was written, its parity and sizes."""
    p = report.parity
    lines = [
        f"exported {report.source} -> {report.output} ({_size(report.size_bytes)}, opset {report.opset}, "
        f"{len(report.labels)} labels, features {list(report.feature_shape)}, {report.seconds:.1f} s)",
        f"parity Keras vs ONNX Runtime on {p.rows} {p.source} rows: max |diff| {p.max_abs_diff:.2e} "
        f"(limit {PARITY_TOLERANCE:g}), argmax agreement {100 * p.argmax_agreement:.1f}%",
        f"embedding output: {report.embedding_size} values (profiles can re-fit the last layer), max relative "
        f"|Keras - ONNX| {report.embedding_max_rel_diff or 0.0:.2e}"
        if report.embedding_size else "no embedding output (the last layer is not a softmax Dense): no profiles",
    ]
    q = report.quantized
    if q is not None:
        lines.append(
            f"int8 {q.path} ({_size(q.size_bytes)}, {100 * q.size_bytes / report.size_bytes:.0f}% of float): "
            f"max |diff| {q.parity.max_abs_diff:.2e}, argmax agreement {100 * q.parity.argmax_agreement:.1f}%"
            + (f", embedding max relative |diff| vs float {q.embedding_max_rel_diff:.2e}"
               if q.embedding_max_rel_diff is not None else "")
        )
        if q.parity.argmax_agreement < INT8_USABLE_AGREEMENT:
            lines.append(
                f"warning: the int8 model disagrees with the float one on "
                f"{100 * (1 - q.parity.argmax_agreement):.0f}% of windows: do not use it; ship the float model"
            )
    return "\n".join(lines)


INT8_USABLE_AGREEMENT = 0.95  # below this argmax agreement the quantised model is not a usable substitute


def _upgrade(args: argparse.Namespace) -> int:
    from ser_live.export.embedding import upgrade_model
    from ser_live.export.onnx_export import int8_path

    int8_source = int8_dest = None
    if args.quantize == "int8":
        int8_source, int8_dest = int8_path(args.source), int8_path(args.output)
        if not int8_source.is_file():
            raise UserError(f"--quantize int8: no {int8_source} beside {args.source} to add the embedding to")
    report = upgrade_model(args.source, args.output, int8_source, int8_dest, overwrite=args.overwrite)
    done = [f"added an embedding output ({report.size} values)"] if report.embedding_added else []
    if report.folded:
        done.append(f"folded batch normalisation into {report.folded} convolutions")
    print(f"{' and '.join(done)}: {args.source} -> {report.output}; probs max |diff| {report.probs_max_diff:.1e}, "
          f"softmax(embedding @ W + b) = probs within {report.reconstruction_max_diff:.1e}")
    if report.int8 is not None:
        print(f"and to {int8_source} -> {report.int8}: probs unchanged (max |diff| {report.int8_probs_max_diff:g})")
    elif int8_source is not None:
        print(f"{int8_source} left as it is: it has its embedding output, and a quantised graph is not folded")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    def work() -> int:
        if args.source.suffix.lower() == ".onnx":
            require_modules(EXPORT_MODULES[:1], "train", "ser-export (bringing a .onnx model up to date)")
            return _upgrade(args)
        require_modules(EXPORT_MODULES, "train", "ser-export")
        from ser_live.export.onnx_export import export_model, load_config

        config = load_config(args.config) if args.config is not None else None
        report = export_model(args.source, args.output, opset=args.opset, quantize=args.quantize, config=config)
        print(format_report(report))
        return 0

    return run_tool("ser-export", work, interrupted="interrupted; nothing written")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

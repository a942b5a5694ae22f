"""The ``graphtrace`` command: ``demo``, ``train`` and ``export``.

Bad arguments and failed inputs print one line and exit with status 2, never a traceback; every
file is written atomically, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import pandas as pd

from . import __version__
from ._files import atomic_write

__all__ = ["main"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _table(df: pd.DataFrame, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col])
        table.add_column(str(col), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
    return table


def seed_expression() -> Any:
    """The seed walk-through's expression ``L = (a*b + c) * f``, labelled as in the seed."""
    from .value import Value

    a = Value(2.0, label="a")
    b = Value(-3.0, label="b")
    c = Value(10.0, label="c")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    f = Value(-2.0, label="f")
    L = d * f
    L.label = "L"
    return L


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    return atomic_write(
        path, lambda fh: df.to_csv(fh, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n", na_rep="nan")
    )


def _write_png(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()), binary=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from .export import edges_frame, nodes_frame, to_dot, to_html
    from .io import save
    from .snapshot import to_networkx

    out = Path(args.out)
    L = seed_expression()
    L.backward()
    G = to_networkx(L)
    console = _console()
    console.print("[bold]L = (a*b + c) * f[/bold], after L.backward():")
    nodes = nodes_frame(G)[["node_id", "label", "op", "role", "data", "grad", "depth"]]
    console.print(_table(nodes, "nodes: each gradient is dL/d(node)"))
    edges = edges_frame(G)[["source_label", "target_label", "op", "local_grad", "grad_contribution"]]
    console.print(_table(edges, "edges: the chain rule, grad_contribution = local_grad * grad(target)"))
    written = [
        to_html(G, out / "seed.html", title="graphtrace: the seed expression L = (a*b + c) * f"),
        save(G, out / "seed.json"),
        atomic_write(out / "seed.dot", lambda fh: fh.write(to_dot(G))),
    ]
    for p in written:
        console.print(f"wrote {p}")
    return 0


#: Upper bounds of the size arguments, checked before anything is allocated: a scalar engine's step
#: graph has ~3 nodes per weight and sample (~600 bytes each), so these keep one step within a few GB.
MAX_WIDTH = 1024
MAX_LAYERS = 16
MAX_SAMPLES = 100_000
MAX_STEPS = 1_000_000
#: nodes of one training step (samples x 3 x weights): 20 million is ~12 GB
MAX_STEP_NODES = 20_000_000


def _hidden(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated layer sizes, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden takes positive layer sizes, got {text!r}")
    if len(sizes) > MAX_LAYERS:
        raise argparse.ArgumentTypeError(f"--hidden takes at most {MAX_LAYERS} layers, got {len(sizes)}")
    if max(sizes) > MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"--hidden layer sizes must be at most {MAX_WIDTH}, got {max(sizes)}")
    return sizes


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]``, else one line naming the bound."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if high is not None and n > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:,}, got {text!r}")
        return n

    return parse


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return x


def _seconds(text: str) -> float:
    """An argparse type: seconds to wait, > 0 and at most a day (what every platform can sleep)."""
    from .report import MAX_INTERVAL

    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < x <= MAX_INTERVAL:  # NaN and infinity fail here too
        raise argparse.ArgumentTypeError(f"expected seconds > 0 and at most {MAX_INTERVAL:g} (a day), got {text!r}")
    return x


def _seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed takes an integer, got {text!r}") from None
    if not 0 <= n < 2**32:
        raise argparse.ArgumentTypeError(f"--seed must be in [0, 2**32 - 1] (numpy's range), got {text!r}")
    return n


def _stem(path: Path) -> Path:
    """``path`` without its format suffix only: ``run.v1.json`` -> ``run.v1``."""
    return path.with_name(path.name[: -len(path.suffix)] if path.suffix else path.name)


def _with_ending(stem: Path, ending: str) -> Path:
    return stem.with_name(stem.name + ending)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report, watch
    from .runs import status

    if args.watch:
        if len(args.run) != 1:
            raise CLIError("--watch follows one run")
        target = Path(args.run[0]) / "report.html" if args.out is None else Path(args.out)
        told: list[bool] = []

        def tell(page: str) -> None:  # said once, at the first page: the watch then runs quietly
            if not told and 'http-equiv="refresh"' in page:
                told.append(True)
                _console().print(
                    f"watching {args.run[0]}: wrote {target}; open it in a browser, it reloads itself every "
                    "5 s while the run records (Ctrl-C stops watching)"
                )

        try:
            path = watch(args.run[0], args.out, interval=args.interval, on_write=tell)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        except KeyboardInterrupt:
            return 130
        state = status(args.run[0])
        if state == "interrupted":
            _console().print(
                f"wrote {path}; the run was interrupted: its manifest says running, but no recorder holds "
                "its lock (was the recorder killed?)"
            )
        else:
            _console().print(f"wrote {path} (the run is {state})")
        return 0
    try:
        path = report(args.run if len(args.run) > 1 else args.run[0], args.out)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    _console().print(f"wrote {path}")
    return 0


#: what train says when matplotlib (the plots extra) is missing
NO_PLOTS = "train_loss.png and train_boundary.png need matplotlib: pip install 'graphtrace-nx[plots]'"


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None without the ``plots`` extra."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .export import to_html
    from .store import no_grad
    from .train import StepResult, TrainingDiverged, moons_demo, train_steps
    from .value import Value

    if args.samples < 2:
        raise CLIError("--samples must be at least 2")
    widths = [2, *args.hidden, 1]
    weights = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    if args.samples * 3 * weights > MAX_STEP_NODES:
        raise CLIError(
            f"one training step of MLP{tuple(widths)} on {args.samples} samples would record about "
            f"{args.samples * 3 * weights:,} nodes (at most {MAX_STEP_NODES:,}): use fewer samples or smaller layers"
        )
    if args.record is None and (args.snapshot_every or args.overwrite):
        raise CLIError("--snapshot-every and --overwrite need --record DIR")
    out = Path(args.out)
    model, X, y = moons_demo(args.samples, args.seed, args.hidden)
    history = []
    initial = [param.data for param in model.parameters()]
    run = None
    if args.record is not None:
        from .runs import record

        mode = "overwrite" if args.overwrite else "new"
        hparams = {"steps": args.steps, "samples": args.samples, "seed": args.seed, "hidden": args.hidden}
        hparams["lr"] = args.lr
        hparams["schedule"] = f"lr = {args.lr:g} * (1 - 0.9 * step / {max(args.steps, 100)})"
        try:
            run = record(args.record, model, hparams=hparams, snapshot_every=args.snapshot_every, mode=mode)
        except FileExistsError:
            raise CLIError(f"{args.record} already holds a run; pass --overwrite to replace it") from None
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    bar = tqdm(
        train_steps(model, X, y, args.steps, run=run, lr=args.lr), total=args.steps, desc="training", unit="step"
    )
    diverged = None
    try:
        for r in bar:
            history.append(r)
            bar.set_postfix(loss=f"{r.loss:.6g}", acc=f"{r.accuracy:.0%}")
    except TrainingDiverged as exc:
        diverged = exc
        history.append(StepResult(exc.step, exc.loss, math.nan, exc.learning_rate))
    except BaseException:
        if run is not None:
            run.close("failed")
        raise
    bar.close()
    if diverged is not None:
        if run is not None:
            run.close("failed")
        out = Path(args.out)
        path = _write_csv(pd.DataFrame([vars(r) for r in history]), out / "train_history.csv")
        print(f"graphtrace train: error: {diverged} History so far: {path}", file=sys.stderr)
        return 1
    if run is not None:
        run.close()
        _console().print(f"recorded {len(history)} steps in {run.path} (query it with gt.open_run)")
    df = pd.DataFrame([vars(r) for r in history])
    written = [_write_csv(df, out / "train_history.csv")]

    plt = _pyplot()
    if plt is not None:
        written += _train_plots(plt, df, model, X, y, args, out)

    # The sample the trained model gets most wrong (the largest 1 - y * score), so that its hinge loss and
    # gradients are non-zero. When every sample is beyond the margin (the default run), the sample the
    # untrained model got most wrong, drawn with the weights of step 0.
    def worst() -> tuple[int, float]:
        with no_grad():
            m = [1.0 - int(yi) * model([float(a), float(b)]).data for (a, b), yi in zip(X, y, strict=True)]
        i = max(range(len(m)), key=m.__getitem__)
        return i, m[i]

    when = "the trained MLP"
    trained: list[float] | None = None
    k, violation = worst()
    if violation <= 0:
        trained = [param.data for param in model.parameters()]
        for param, w in zip(model.parameters(), initial, strict=True):
            param.data = w
        k, violation = worst()
        when = "the MLP at step 0 (every sample is beyond the margin after training)"
    x0 = [Value(float(X[k, 0]), label="x0"), Value(float(X[k, 1]), label="x1")]
    score = model(x0)
    score.label = "score"
    sample_loss = (1 + -int(y[k]) * score).relu()
    sample_loss.label = "loss"
    model.zero_grad()
    sample_loss.backward()
    title = f"sample {k} (label {int(y[k]):+d}, hinge loss {sample_loss.data:.4g}) through {when}"
    written.append(to_html(sample_loss, out / "train_sample.html", title=title))
    if trained is not None:  # the model is left trained
        for param, w in zip(model.parameters(), trained, strict=True):
            param.data = w

    last = history[-1]
    first_full = next((r.step for r in history if r.accuracy == 1.0), None)
    reached = (
        f"100% accuracy first reached at step {first_full}"
        if first_full is not None
        else f"100% accuracy not reached in {len(history)} steps"
    )
    console = _console()
    console.print(f"step {last.step}: loss {last.loss!r}, accuracy {last.accuracy:.0%}; {reached}")
    for p in written:
        console.print(f"wrote {p}")
    if plt is None:
        console.print(NO_PLOTS, markup=False)  # [plots] is text, not rich markup
    return 0


def _train_plots(
    plt: Any, df: pd.DataFrame, model: Any, X: Any, y: Any, args: argparse.Namespace, out: Path
) -> list[Path]:
    """The loss and accuracy curves and the decision boundary, as PNG files."""
    from .train import decision_grid

    written = []
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(df["step"], df["loss"], color="tab:blue", label="loss")
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss", color="tab:blue")
    ax1.set_yscale("log")
    ax2 = ax1.twinx()
    ax2.plot(df["step"], df["accuracy"], color="tab:green", label="accuracy")
    ax2.set_ylabel("accuracy", color="tab:green")
    ax2.set_ylim(0, 1.05)
    ax1.set_title(f"MLP(2, {[*args.hidden, 1]}) on make_moons({args.samples}, noise=0.1)")
    written.append(_write_png(fig, out / "train_loss.png"))
    plt.close(fig)

    xx, yy, Z = decision_grid(model, X)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(xx, yy, Z, cmap=plt.cm.Spectral, alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap=plt.cm.Spectral, edgecolors="k")
    ax.set_title("decision boundary")
    written.append(_write_png(fig, out / "train_boundary.png"))
    plt.close(fig)
    return written


def cmd_export(args: argparse.Namespace) -> int:
    from .export import edges_frame, nodes_frame, to_dot, to_html
    from .io import load

    src = Path(args.file)
    if args.to == "tensorboard":  # a recorded run's scalars and histograms
        from .runs import to_tensorboard

        try:
            logdir = to_tensorboard(src, Path(args.out) if args.out else src / "tensorboard")
        except (ValueError, ImportError) as exc:  # ImportError: the extra is missing, its install line
            raise CLIError(str(exc)) from None
        print(f"wrote {logdir / Path(src).resolve().name} (tensorboard --logdir {logdir})")
        return 0
    if args.to != "tensorboard" and src.is_dir():
        raise CLIError(
            f"{src} is a directory: --to tensorboard exports a recorded run; html, dot and csv a saved trace"
        )
    try:
        G = load(src)
    except FileNotFoundError:
        raise CLIError(f"no such file: {src}") from None
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    stem = Path(args.out) if args.out else _stem(src)
    endings = {"html": [".html"], "dot": [".dot"], "csv": [".nodes.csv", ".edges.csv"]}[args.to]
    targets = [_with_ending(stem, e) for e in endings]
    for t in targets:
        if t.resolve() == src.resolve():
            raise CLIError(f"the output {t} would overwrite the input; choose another --out")
    if args.to == "html":
        written = [to_html(G, targets[0])]
    elif args.to == "dot":
        written = [atomic_write(targets[0], lambda fh: fh.write(to_dot(G)))]
    else:
        written = [_write_csv(nodes_frame(G), targets[0]), _write_csv(edges_frame(G), targets[1])]
    for p in written:
        print(f"wrote {p}")
    return 0


_EXAMPLES = {
    "graphtrace": """examples:
  graphtrace demo                                   the seed's expression, its tables and exports
  graphtrace train --record runs/demo               train micrograd's demo, recording every step
  graphtrace report runs/demo                       the run's interactive report (runs/demo/report.html)
  graphtrace export exports/seed.json --to html     a saved trace as an interactive page

'graphtrace COMMAND --help' shows each command's options and examples.

installed with: pip install graphtrace-nx (the distribution; the command and the module are graphtrace)
  pip install 'graphtrace-nx[tensorboard]'          for export RUN --to tensorboard
  pip install 'graphtrace-nx[plots]'                for train's PNG plots (matplotlib)
  pip install 'graphtrace-nx[torch]'                for gt.pytorch, the PyTorch bridge""",
    "demo": """examples:
  graphtrace demo                   writes exports/seed.html, seed.json and seed.dot
  graphtrace demo --out /tmp/seed   the same files in /tmp/seed""",
    "train": """examples:
  graphtrace train                                  micrograd's demo: 100 steps, 100 moons, MLP(2, [16, 16, 1])
  graphtrace train --steps 20 --hidden 8 --lr 0.5   a smaller, shorter run
  graphtrace train --record runs/demo               also record every step (gt.open_run("runs/demo"))
  graphtrace train --record runs/demo --snapshot-every 25 --overwrite
                                                    replace the run, with the whole trace every 25 steps

train_loss.png and train_boundary.png need matplotlib: pip install 'graphtrace-nx[plots]'""",
    "report": """examples:
  graphtrace report runs/demo                       writes runs/demo/report.html
  graphtrace report runs/demo --watch               keeps it current while the run records
  graphtrace report runs/lr0.1 runs/lr1 --out compare.html
                                                    two runs compared on one page""",
    "export": """examples:
  graphtrace export exports/seed.json --to html     exports/seed.html, the interactive page
  graphtrace export exports/seed.json --to dot      exports/seed.dot, for Graphviz
  graphtrace export trace.parquet --to csv          trace.nodes.csv and trace.edges.csv
  graphtrace export runs/demo --to tensorboard      runs/demo/tensorboard/demo, for tensorboard --logdir
  graphtrace export runs/demo --to tensorboard --out tb
                                                    tb/demo (again: its earlier events replaced)""",
}


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = _Parser(
        prog="graphtrace",
        description="Scalar autograd whose computation graph is a NetworkX DiGraph.",
        epilog=_EXAMPLES["graphtrace"],
        formatter_class=raw,
    )
    p.add_argument("--version", action="version", version=f"graphtrace {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser(
        "demo",
        help="the seed's expression: backward, tables, HTML/JSON/DOT exports",
        epilog=_EXAMPLES["demo"],
        formatter_class=raw,
    )
    d.add_argument("--out", default="exports", help="output folder (default: exports/)")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser(
        "train",
        help="micrograd's moons demo with a progress bar, history, plots and a sample's graph",
        epilog=_EXAMPLES["train"],
        formatter_class=raw,
    )
    t.add_argument(
        "--steps", type=_integer(1, MAX_STEPS), default=100, help=f"training steps, at most {MAX_STEPS:,} (default 100)"
    )
    t.add_argument(
        "--samples",
        type=_integer(1, MAX_SAMPLES),
        default=100,
        help=f"make_moons samples, at most {MAX_SAMPLES:,} (default 100)",
    )
    t.add_argument(
        "--lr",
        type=_positive_float,
        default=1.0,
        help="starting learning rate (default 1.0, micrograd's); it falls to a tenth of that by the last step "
        "(micrograd's 1.0 - 0.9 * step / 100 for up to 100 steps, stretched over longer runs)",
    )
    t.add_argument("--seed", type=_seed, default=1337, help="seed for numpy and random, 0..2**32-1 (default 1337)")
    t.add_argument(
        "--hidden", type=_hidden, default=[16, 16], help=f"hidden layer sizes, each at most {MAX_WIDTH} (default 16,16)"
    )
    t.add_argument("--out", default="exports", help="output folder (default: exports/)")
    t.add_argument("--record", metavar="DIR", help="record every step into run directory DIR (see gt.open_run)")
    t.add_argument(
        "--snapshot-every",
        type=_integer(0),
        default=0,
        metavar="K",
        help="with --record: also the whole trace every K steps",
    )
    t.add_argument("--overwrite", action="store_true", help="with --record: replace the run already in DIR")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser(
        "report",
        help="one offline HTML report of a run recorded with train --record / gt.record, or several runs compared",
        epilog=_EXAMPLES["report"],
        formatter_class=raw,
    )
    r.add_argument("run", nargs="+", help="the run directory (several: one page comparing them)")
    r.add_argument(
        "--watch",
        action="store_true",
        help="rewrite the page as steps land, the open page reloading itself, until the run stops running",
    )
    r.add_argument(
        "--interval",
        type=_seconds,
        default=2.0,
        help="seconds between looks at the run (--watch; default 2, at most a day)",
    )
    r.add_argument(
        "--out", help="output file (default: RUN/report.html; for several runs: compare.html beside the first)"
    )
    r.set_defaults(func=cmd_report)

    e = sub.add_parser(
        "export",
        help="convert a saved trace (.json, .graphml, .parquet), or a recorded run to TensorBoard",
        epilog=_EXAMPLES["export"],
        formatter_class=raw,
    )
    e.add_argument("file", help="a trace written by graphtrace.save, or a run directory (--to tensorboard)")
    e.add_argument(
        "--to",
        choices=["html", "dot", "csv", "tensorboard"],
        required=True,
        help="output format (tensorboard: a run's scalars, histograms and hyper-parameters as event files, in "
        "OUT/NAME, default RUN/tensorboard/NAME; it needs pip install 'graphtrace-nx[tensorboard]')",
    )
    e.add_argument(
        "--out", help="output path without suffix (default: FILE without its suffix: run.v1.json -> run.v1.html)"
    )
    e.set_defaults(func=cmd_export)
    return p


def main(argv: Sequence[str] | None = None, *, stderr: IO[str] | None = None) -> int:
    """Entry point of the ``graphtrace`` console script; returns the exit status."""
    err = stderr or sys.stderr
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else list(argv)):  # bare `graphtrace`: its help, as git prints its usage
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CLIError as exc:
        print(f"graphtrace {args.command}: error: {exc}", file=err)
        return 2
    except OSError as exc:
        print(f"graphtrace {args.command}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=err)
        return 2
    except KeyboardInterrupt:
        print(f"graphtrace {args.command}: interrupted", file=err)
        return 130


def run() -> None:
    """Console-script wrapper: ``sys.exit(main())``."""
    sys.exit(main())

"""The graphtrace command, run as a real subprocess."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import graphtrace as gt


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphtrace", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_demo_prints_both_tables_and_writes_the_files(tmp_path: Path) -> None:
    r = run("demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "grad_contribution" in r.stdout and "depth" in r.stdout
    for name in ("seed.html", "seed.json", "seed.dot"):
        assert (tmp_path / "exports" / name).is_file()
        assert f"exports/{name}" in r.stdout
    G = gt.load(tmp_path / "exports" / "seed.json")
    grads = {d["label"]: d["grad"] for _, d in G.nodes(data=True)}
    assert grads == {"a": 6.0, "b": -4.0, "c": -2.0, "e": -2.0, "d": -2.0, "f": 4.0, "L": 1.0}
    assert (tmp_path / "exports" / "seed.dot").read_text().startswith("digraph")


def test_train_with_defaults_reproduces_micrograds_demo(tmp_path: Path) -> None:
    r = run("train", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    hist = pd.read_csv(tmp_path / "out" / "train_history.csv")
    assert len(hist) == 100
    assert hist["loss"].iloc[-1] == pytest.approx(0.010978370135492717, abs=1e-9)
    assert hist["accuracy"].iloc[-1] == 1.0
    assert int(hist.index[hist["accuracy"] == 1.0][0]) <= 40
    for name in ("train_loss.png", "train_boundary.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "out" / "train_sample.html").read_text()
    assert "vis.Network(" in page
    assert "100% accuracy first reached at step 40" in r.stdout.replace("\n", " ")
    # the sample drawn has a non-zero loss (every sample is beyond the margin after training: step 0's worst)
    m = re.search(r"sample (\d+) \(label ([+-]1), hinge loss ([0-9.e+-]+)\) through the MLP at step 0", page)
    assert m is not None and float(m.group(3)) > 0, page[:2000]


def test_train_small_run_and_options(tmp_path: Path) -> None:
    r = run("train", "--steps", "3", "--samples", "20", "--hidden", "4", "--seed", "1", "--out", "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(pd.read_csv(tmp_path / "o" / "train_history.csv")) == 3


def test_export_converts_saved_traces(tmp_path: Path) -> None:
    a = gt.Value(2.0, label="a")
    L = a * a + 1
    L.backward()
    for suffix in (".json", ".graphml", ".parquet"):
        src = gt.save(L, tmp_path / f"t{suffix}")
        for fmt in ("html", "dot", "csv"):
            r = run("export", str(src), "--to", fmt, cwd=tmp_path)
            assert r.returncode == 0, r.stderr
    nodes = pd.read_csv(tmp_path / "t.nodes.csv")
    assert nodes["grad"].tolist() == [4.0, 1.0, 1.0, 1.0]
    assert (tmp_path / "t.html").is_file() and (tmp_path / "t.dot").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--steps", "zero"],
        ["train", "--hidden", "16,x"],
        ["train", "--steps", "-3"],
        ["train", "--seed", "-1"],
        ["train", "--seed", "4294967296"],
        ["train", "--hidden", "0"],
        ["export", "graphstr.json", "--to", "html"],
        ["export", "multi.json", "--to", "csv"],
        ["export", "nested.json", "--to", "dot"],
        ["export", "missing.json", "--to", "html"],
        ["export", "notes.txt", "--to", "html"],
        ["export", "broken.json", "--to", "dot"],
        ["export", "broken.json", "--to", "pdf"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_give_one_line_and_status_2(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.json").write_text('{"graphtrace": 1, "nodes": [')
    (tmp_path / "graphstr.json").write_text('{"graphtrace": 1, "graph": "str", "nodes": [], "edges": []}')
    (tmp_path / "multi.json").write_text('{"graphtrace": 1, "multigraph": true, "nodes": [], "edges": []}')
    (tmp_path / "nested.json").write_text("[" * 100_000)
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("graphtrace")


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    (tmp_path / "exports").write_text("a file where the output folder should be")
    r = run("demo", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports"]


def test_bare_graphtrace_prints_its_help(tmp_path: Path) -> None:
    r = run(cwd=tmp_path)
    assert r.returncode == 2 and r.stdout.startswith("usage: graphtrace") and "Traceback" not in r.stderr
    for command in ("demo", "train", "report", "export"):
        assert command in r.stdout


def test_help_on_every_command(tmp_path: Path) -> None:
    for cmd in ([], ["demo"], ["train"], ["report"], ["export"]):
        r = run(*cmd, "--help", cwd=tmp_path)
        assert r.returncode == 0 and "usage: graphtrace" in r.stdout
        assert "\nexamples:\n  graphtrace " in r.stdout, cmd


def test_every_example_in_the_help_is_a_valid_command_line() -> None:
    import shlex

    from graphtrace.cli import _EXAMPLES, build_parser

    parser = build_parser()
    seen = set()
    for command, text in _EXAMPLES.items():
        lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("graphtrace ")]
        assert lines, command
        for line in lines:
            argv = shlex.split(line.split("  ")[0])[1:]  # the command line, without its description
            args = parser.parse_args(argv)  # exits (SystemExit) on an invalid one
            seen.add(args.command)
            if command != "graphtrace":
                assert args.command == command, line
    assert seen == {"demo", "train", "report", "export"}


def test_json_export_is_a_node_link_document(tmp_path: Path) -> None:
    run("demo", cwd=tmp_path)
    doc = json.loads((tmp_path / "exports" / "seed.json").read_text())
    assert doc["graphtrace"] == 1 and doc["directed"] is True and len(doc["nodes"]) == 7


def test_width_one_layers_train_and_100_percent_not_reached_is_said(tmp_path: Path) -> None:
    for hidden in ("1", "16,1"):
        r = run("train", "--steps", "1", "--samples", "10", "--hidden", hidden, "--out", "o", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "100% accuracy not reached in 1 steps" in r.stdout.replace("\n", " ")
        assert "None" not in r.stdout


def test_export_names_outputs_after_the_full_stem(tmp_path: Path) -> None:
    L = gt.Value(2.0, label="a") * 3
    for version in ("v1", "v2"):
        gt.save(L, tmp_path / f"run.{version}.json")
        r = run("export", f"run.{version}.json", "--to", "html", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "run.v1.html").is_file() and (tmp_path / "run.v2.html").is_file()
    assert not (tmp_path / "run.html").exists()


def test_an_unwritable_output_names_the_users_path(tmp_path: Path) -> None:
    gt.save(gt.Value(2.0) * 3, tmp_path / "t.json")
    (tmp_path / "t.html").write_text("read-only")
    (tmp_path / "t.html").chmod(0o444)
    r = run("export", "t.json", "--to", "html", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "t.html" in r.stderr and ".tmp" not in r.stderr
    assert (tmp_path / "t.html").read_text() == "read-only"


def test_export_keeps_scopes_and_labels(tmp_path: Path) -> None:
    random.seed(4)
    model = gt.nn.MLP(2, [3, 1])
    with gt.scope("sample"):
        out = model([gt.Value(0.5, label="x0"), gt.Value(-0.5, label="x1")])
    gt.save(out, tmp_path / "scoped.parquet")
    r = run("export", "scoped.parquet", "--to", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    nodes = pd.read_csv(tmp_path / "scoped.nodes.csv", keep_default_na=False)
    assert "sample/MLP[0]/Layer1/Neuron0" in set(nodes["scope"])
    assert {"L0.N0.w0", "L1.N0.b"} <= set(nodes["label"])
    r = run("export", "scoped.parquet", "--to", "dot", cwd=tmp_path)
    assert r.returncode == 0 and "subgraph cluster_" in (tmp_path / "scoped.dot").read_text()


def test_train_past_100_steps_keeps_a_positive_schedule_and_converges(tmp_path: Path) -> None:
    r = run("train", "--steps", "250", "--samples", "30", "--hidden", "8", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    hist = pd.read_csv(tmp_path / "out" / "train_history.csv")
    assert len(hist) == 250 and hist["loss"].notna().all()
    assert (hist["learning_rate"] > 0).all() and hist["learning_rate"].is_monotonic_decreasing
    assert hist["learning_rate"].iloc[-1] == pytest.approx(0.1, abs=0.01)
    assert hist["loss"].iloc[-1] < hist["loss"].iloc[0]
    # up to 100 steps the schedule is micrograd's, bit for bit
    from graphtrace.train import learning_rate

    assert [learning_rate(k, 100) for k in range(100)] == [1.0 - 0.9 * k / 100 for k in range(100)]


def test_train_that_goes_non_finite_stops_with_a_message_and_status_1(tmp_path: Path) -> None:
    r = run("train", "--steps", "50", "--samples", "20", "--hidden", "8", "--lr", "1e150", "--out", "o", cwd=tmp_path)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "the loss became nan at step" in r.stderr and "Traceback" not in r.stderr
    text = (tmp_path / "o" / "train_history.csv").read_text()
    assert ",nan," in text  # NaN written as nan, not as an empty cell
    hist = pd.read_csv(tmp_path / "o" / "train_history.csv")
    assert len(hist) < 50 and pd.isna(hist["loss"].iloc[-1])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--hidden", "99999999999999999999"], "at most 1024"),
        (["--hidden", ",".join(["4"] * 17)], "at most 16 layers"),
        (["--samples", "100001"], "at most 100,000"),
        (["--steps", "1000001"], "at most 1,000,000"),
        (["--samples", "100000", "--hidden", "1000,1000"], "would record about"),
        (["--lr", "-1"], "positive finite"),
        (["--lr", "nan"], "positive finite"),
    ],
)
def test_train_refuses_sizes_beyond_its_bounds_before_allocating(tmp_path: Path, args: list[str], words: str) -> None:
    r = run("train", *args, "--out", "o", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()

"""graphtrace report: one offline HTML page of a recorded run."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import graphtrace as gt
from graphtrace.cli import main
from graphtrace.report import report, report_html

ROOT = Path(__file__).parent.parent


def _run(path: Path, steps: int = 6, *, break_at: int | None = None) -> None:
    random.seed(7)
    model = gt.nn.MLP(2, [4, 4, 1])
    data = [[random.uniform(-1, 1), random.uniform(-1, 1)] for _ in range(6)]
    with gt.record(path, model, hparams={"note": "<script>alert(1)</script>"}, snapshot_every=2, scopes_every=2) as run:
        for step in range(steps):
            if step == break_at:
                model.layers[0].neurons[0].w[0].data = float("nan")
            loss = sum((model(x) - 1.0) ** 2 for x in data) * (1.0 / len(data))
            model.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.data -= 0.05 * p.grad
            run.log(step, loss, accuracy=0.5, learning_rate=0.05)


def test_report_has_every_plot_and_escapes_user_text(tmp_path: Path) -> None:
    path = tmp_path / "<i>run&co"
    _run(path)
    page = report(path).read_text()
    plots = re.findall(r'<figure class="plot" data-plot="([^"]+)"', page)
    # the model has ReLUs and no tanh: a dead-ReLU plot, no saturated-tanh one
    assert plots == [
        "loss",
        "accuracy",
        "learning rate",
        "gradient flow",
        "update ratio",
        "distribution of data",
        "distribution of grad",
        "distribution of update",
        "histogram",
        "dead relu",
    ], plots
    assert "model: 3 layers, 9 modules, 37 parameters" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;i&gt;run&amp;co" in page
    assert "No parameter, gradient or loss went non-finite" in page
    # the last snapshot's graph page travels gzipped and base64-encoded, unpacked when scrolled to
    import base64
    import gzip

    packed = page.split('<script type="text/plain" id="graph-page">')[1].split("</script>")[0]
    graph = gzip.decompress(base64.b64decode(packed)).decode("utf-8")
    assert graph.startswith("<!DOCTYPE html>") and "step 4 of &lt;i&gt;run&amp;co" in graph
    assert re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page) is None  # nothing to fetch (xmlns are names)


def test_report_lists_the_first_non_finite_step(tmp_path: Path) -> None:
    _run(tmp_path / "run", steps=5, break_at=3)
    page = report_html(tmp_path / "run")
    assert "First step with a non-finite parameter or gradient: 3." in page
    assert "L0.N0.w0" in page
    # the last snapshot (step 4) holds NaNs: its anomalies table names where they start
    assert "Non-finite nodes of the step 4 snapshot (origins first):" in page
    table = page.split("Non-finite nodes of the step 4 snapshot")[1].split("</table>")[0]
    assert "L0.N0.w0" in table


def test_a_finite_snapshot_has_no_anomalies_table(tmp_path: Path) -> None:
    # (x - 1) ** 2 gives its constant exponent a NaN grad wherever x < 1 (as torch does): d * d has none
    random.seed(7)
    model = gt.nn.MLP(2, [4, 1])
    with gt.record(tmp_path / "run", model, snapshot_every=1) as run:
        for step in range(2):
            d = model([0.5, -0.5]) - 1.0
            loss = d * d
            model.zero_grad()
            loss.backward()
            run.log(step, loss)
    page = report_html(tmp_path / "run")
    assert "The graph of step 1" in page and "Non-finite nodes of the step" not in page


def test_report_errors_name_the_problem_and_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a graphtrace run"):
        report(tmp_path)
    _run(tmp_path / "run", steps=1)
    with pytest.raises(ValueError, match=r"should end in \.html"):
        report(tmp_path / "run", tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


def test_cli_report(tmp_path: Path) -> None:
    _run(tmp_path / "run", steps=2)
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text().count('<figure class="plot"') == 10
    errors: list[str] = []

    class Err:
        def write(self, s: str) -> None:
            errors.append(s)

    assert main(["report", str(tmp_path)], stderr=Err()) == 2  # type: ignore[arg-type]
    assert "not a graphtrace run" in "".join(errors)


# ---- --watch ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("interval", ["inf", "1e300", "nan", "0", "-1", "2 s"])
def test_watch_refuses_an_interval_it_cannot_sleep_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], interval: str
) -> None:
    """--interval inf / 1e300 reached time.sleep and died with an OverflowError traceback (exit 1)."""
    from graphtrace.report import watch

    path = tmp_path / "run"
    with gt.record(path, gt.nn.MLP(1, [1])) as run:  # running: the watch would sleep
        run.log(0, 1.0)
        run.flush()
        with pytest.raises(SystemExit) as exit_:
            main(["report", str(path), "--watch", "--interval", interval])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--interval" in err and "Traceback" not in err, err
        if interval != "2 s":
            with pytest.raises(ValueError, match="interval must be a number of seconds"):
                watch(path, interval=float(interval))
    assert not (path / "report.html").exists()


_KILLED_RECORDER = """
import os, sys
sys.path.insert(0, {root!r})
import graphtrace as gt
run = gt.record({path!r}, gt.nn.MLP(1, [1]))
run.log(0, 1.0)
run.flush()
os.kill(os.getpid(), 9)
"""


def test_watch_of_a_killed_recorder_stops_and_says_the_run_was_interrupted(tmp_path: Path) -> None:
    """The manifest of a SIGKILLed recorder says running forever: --watch looked forever."""
    import subprocess
    import sys

    path = tmp_path / "run"
    code = _KILLED_RECORDER.format(root=str(ROOT), path=str(path))
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == -9
    assert gt.runs.status(path) == "interrupted"
    watcher = [sys.executable, "-m", "graphtrace", "report", str(path), "--watch", "--interval", "0.05"]
    done = subprocess.run(watcher, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "the run was interrupted" in done.stdout
    page = (path / "report.html").read_text(encoding="utf-8")
    assert "http-equiv" not in page and "<b>interrupted" in page and "1 complete steps" in page
    # a live recorder is not interrupted, in this process or another
    with gt.record(path, gt.nn.MLP(1, [1]), mode="resume") as run:
        assert gt.runs.status(path) == "running"
        probe = "import sys, graphtrace as gt; print(gt.runs.status(sys.argv[1]))"
        other = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
        assert other.stdout.strip() == "running", other.stderr
        run.log(1, 0.5)
    assert gt.runs.status(path) == "finished"


_COMPACTING_RECORDER = """
import sys, time
sys.path.insert(0, {root!r})
import graphtrace as gt
model = gt.nn.MLP(2, [3, 1])
with gt.record({path!r}, model, chunk_steps=2) as run:
    print("ready", flush=True)
    for step in range(300):
        loss = (model([1.0, -1.0]) - 1.0) ** 2
        model.zero_grad(); loss.backward()
        run.log(step, loss)
        time.sleep(0.005)
"""


def test_watch_follows_a_recorder_that_merges_every_two_steps(tmp_path: Path) -> None:
    """#26 item 13, as found: --watch while the recorder compacts (chunk_steps=2, interval 0.05) exited 2
    with "Failed to open ... .staged/steps/step=50.parquet" in 3 of 3 tries."""
    import subprocess
    import sys

    from graphtrace.report import watch

    path = tmp_path / "run"
    code = _COMPACTING_RECORDER.format(root=str(ROOT), path=str(path))
    recorder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert recorder.stdout is not None and recorder.stdout.readline().strip() == "ready"
        pages: list[str] = []
        watch(path, interval=0.05, reload_every=1, on_write=pages.append)
    finally:
        recorder.wait(300)
    assert recorder.returncode == 0
    assert len(pages) >= 2 and "300 complete steps" in pages[-1] and "http-equiv" not in pages[-1]


def test_the_model_table_counts_in_integers_and_hparams_read_as_written(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    x = torch.randn(4, 2)
    with gt.record(tmp_path / "t", model, hparams={"optimiser": "Adam, β₁ = 0.9", "note": "日本"}) as run:
        for step in range(2):
            loss = model(x).square().mean()
            loss.backward()
            run.log(step, loss)
    page = report_html(tmp_path / "t")
    assert "Adam, β₁ = 0.9" in page and "日本" in page and "\\u03b2" not in page
    table = page.split('class="dataframe model"')[1].split("</table>")[0]
    counts = re.findall(r"<td>([0-9.]+)</td>", table)
    assert counts and all("." not in c for c in counts), counts  # 9 and 4 parameters, not 9.0 and 4.0
    assert "model: 2 layers, 2 modules, 13 parameters" in page
    one = tmp_path / "one"
    with gt.record(one, gt.nn.MLP(1, [1])) as run:
        run.log(0, 1.0)
    page = report_html(one)
    assert "model: 1 layer, 1 module, 2 parameters" in page
    assert "<p>last step 0: loss 1.0</p>" in page  # no accuracy logged: none said (not 'accuracy nan')
    assert "last step 1: loss " in report_html(tmp_path / "t")
    assert "learning rate 0.05</p>" in report_html(_run(tmp_path / "lr") or tmp_path / "lr")


def test_a_bidi_override_in_a_run_name_or_a_parameter_name_stays_inside_it(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Evil(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_parameter("w\u202egnp", torch.nn.Parameter(torch.ones(2)))

    path = tmp_path / "job\u202enur"
    model = Evil()
    runs = [gt.record(path, model, rank=k, world_size=2) for k in range(2)]
    for step in range(2):
        for k, run in enumerate(runs):
            if (k, step) == (1, 1):
                with torch.no_grad():
                    model.get_parameter("w\u202egnp").add_(1.0)  # rank 1 departs at step 1
            loss = model.get_parameter("w\u202egnp").square().sum()
            loss.backward()
            run.log(step, loss)
            model.zero_grad()
    for run in runs:
        run.close()
    said = str(gt.runs.ranks(path))
    assert "the grad of \u2068w\u202egnp\u2069 (in Evil) is" in said, said
    page = report_html(path)
    assert "\u2068job\u202enur\u2069" in page and "the grad of \u2068w\u202egnp\u2069 (in Evil) is" in page


def test_a_frozen_parameter_has_no_gradient_rather_than_a_non_finite_one(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    model[0].requires_grad_(False)  # fine-tuning the head only: the first layer never gets a gradient
    x = torch.randn(4, 2)
    path = tmp_path / "job"
    runs = [gt.record(path, model, rank=k, world_size=2) for k in range(2)]
    for step in range(2):
        for run in runs:
            loss = model(x).square().mean()
            loss.backward()
            run.log(step, loss)
            model.zero_grad()
    for run in runs:
        run.close()
    con = gt.open_run(path)
    rows = con.sql("SELECT name, count(grad), count(*) FROM params GROUP BY name ORDER BY name").fetchall()
    assert rows == [("0.bias", 0, 4), ("0.weight", 0, 4), ("2.bias", 4, 4), ("2.weight", 4, 4)]  # null, not NaN
    found = gt.runs.ranks(path)
    assert found.nonfinite.empty and str(found) == "The 2 ranks agree at every step.", str(found)
    page = report_html(path)
    assert "On rank 0, no parameter, gradient or loss went non-finite." in page


def test_a_live_runs_report_reads_as_people_write_numbers(tmp_path: Path) -> None:
    """While the run is live there is no "finished None"; logged numbers show 6 significant digits."""
    model = gt.nn.MLP(1, [2, 1])
    run = gt.record(tmp_path / "r", model)
    lr = 0.1 + 0.2  # 0.30000000000000004
    loss = (model([0.5]) - 1.0) ** 2
    loss.backward()
    run.log(0, loss, learning_rate=lr)
    run.flush()
    page = report_html(tmp_path / "r")
    assert "finished None" not in page and "status <b>running</b>" in page
    assert "learning rate 0.3</p>" in page
    assert repr(lr) not in page
    run.close()
    assert "finished 20" in report_html(tmp_path / "r")


def test_watch_says_where_the_page_is_while_the_run_records(tmp_path: Path) -> None:
    """--watch used to print nothing until the run ended: a person saw a silent terminal."""
    import subprocess
    import sys
    import threading

    path = tmp_path / "run"
    with gt.record(path, gt.nn.MLP(1, [1])) as run:
        run.log(0, 1.0)
        run.flush()
        watcher = subprocess.Popen(
            [sys.executable, "-m", "graphtrace", "report", str(path), "--watch", "--interval", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**__import__("os").environ, "COLUMNS": "200"},
        )
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(watcher.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(120)
        assert first and f"watching {path}" in first[0] and "report.html" in first[0], first
        assert watcher.poll() is None  # still watching: the run records
    out, err = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, err
    assert "the run is finished" in out

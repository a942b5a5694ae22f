"""Real data-parallel training (torch DDP, the gloo backend on CPU, two processes) recorded into one run:
a NaN planted in rank 1's batch, and rank 1 skipping an optimizer step, are named by ``gt.runs.ranks``
and by the report (rank, step and module).

The processes are started with ``torch.multiprocessing.spawn`` from a script in a subprocess (the
process group meets through a file, gloo on the loopback interface); timeouts are generous and no
verdict depends on time, so a loaded two-core machine passes as an idle one does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import graphtrace as gt

pytest.importorskip("torch")

ROOT = Path(__file__).parent.parent

_SCRIPT = r"""
import os, sys
sys.path.insert(0, {root!r})
from collections import OrderedDict

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import graphtrace as gt

STEPS = 6


def work(rank, world, mode, path, store):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=world)
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = torch.nn.Sequential(
        OrderedDict(fc1=torch.nn.Linear(3, 8), act=torch.nn.Tanh(), fc2=torch.nn.Linear(8, 1))
    )
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(100 + rank)  # each rank its own batches
    with gt.record(path, model, hparams={{"mode": mode}}) as run:  # rank and world from the process group
        assert (run.rank, run.world_size) == (rank, world)
        for step in range(STEPS):
            x = torch.randn(16, 3, generator=data)
            y = x.sum(dim=1, keepdim=True)
            if mode == "nan" and rank == 1 and step == 3:
                x[5, 1] = float("nan")  # a bad sample in rank 1's batch
            with gt.pytorch.trace(model) as tr:
                loss = ((ddp(x) - y) ** 2).mean()
                opt.zero_grad()
                loss.backward()  # DDP averages the gradients of every rank here
            if not (mode == "desync" and rank == 1 and step == 3):
                opt.step()  # rank 1 skips this one: its parameters fall out of step with rank 0's
            run.log(step, loss, graph=tr.graph)
    dist.destroy_process_group()


if __name__ == "__main__":
    mode, path, store = sys.argv[1:4]
    mp.spawn(work, args=(2, mode, path, store), nprocs=2, join=True)
    print("done")
"""


def _train(tmp_path: Path, mode: str) -> Path:
    script = tmp_path / "ddp.py"
    script.write_text(_SCRIPT.format(root=str(ROOT)), encoding="utf-8")
    path = tmp_path / f"run-{mode}"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    done = subprocess.run(
        [sys.executable, str(script), mode, str(path), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-4000:]
    return path


def test_a_nan_in_rank_1s_batch_is_named_by_rank_step_and_module(tmp_path: Path) -> None:
    path = _train(tmp_path, "nan")
    assert gt.runs.rank_status(path) == {0: "finished", 1: "finished"}
    con = gt.open_run(path)
    assert con.sql("SELECT rank, count(*) FROM steps GROUP BY rank ORDER BY rank").fetchall() == [(0, 6), (1, 6)]
    found = gt.runs.ranks(path)
    assert found.first is not None
    assert (found.first["step"], found.first["rank"], found.first["kind"]) == (3, 1, "loss")
    assert found.first["reference"] == found.first["reference"]  # rank 0's loss was finite
    rows = found.nonfinite.set_index("rank")
    # rank 1: its loss, and the trace says where: the first Linear's matrix product, in the forward pass
    assert rows.loc[1, "step"] == 3 and rows.loc[1, "kind"] == "loss"
    assert rows.loc[1, "origin"] == "forward" and rows.loc[1, "origin_op"] == "addmm"
    assert rows.loc[1, "origin_scope"].endswith("fc1"), rows.loc[1, "origin_scope"]
    # rank 0 got its NaN through the gradients' all-reduce of the same step, its own loss finite
    assert rows.loc[0, "step"] == 3 and rows.loc[0, "kind"] == "grad"
    text = str(found)
    assert text.startswith("Rank 1 departs first: at step 3 its loss is nan"), text
    page = gt.report.report_html(path)
    assert "<h2>Ranks</h2>" in page
    section = page[page.index("<h2>Ranks</h2>") :]
    assert "Rank 1 departs first: at step 3 its loss is nan" in section and "fc1" in section and "addmm" in section


def test_a_rank_that_skips_an_optimizer_step_is_named_with_the_first_parameter_it_departs_on(tmp_path: Path) -> None:
    path = _train(tmp_path, "desync")
    found = gt.runs.ranks(path)
    assert found.first is not None
    first = found.first
    assert (first["step"], first["rank"], first["kind"], first["name"]) == (3, 1, "data", "fc1.weight"), first
    assert first["scope"].endswith("fc1") and first["value"] != first["reference"]
    assert found.nonfinite.empty
    # the gradients stayed the same on both ranks at that step (DDP averaged them): only values departed
    con = gt.open_run(path)
    grads = con.sql(
        "SELECT count(DISTINCT grad) FROM params WHERE step = 3 AND name = 'fc1.weight' GROUP BY step"
    ).fetchall()
    assert grads == [(1,)]
    assert list(found.departures["rank"]) == [1]
    page = gt.report.report_html(path)
    section = page[page.index("<h2>Ranks</h2>") :]
    assert "Rank 1 departs first: at step 3 the data of fc1.weight" in section

"""micrograd's moons demo as a library function: the loss, one SGD step, a training loop."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .datasets import make_moons
from .nn import MLP
from .store import no_grad
from .value import Value

__all__ = ["StepResult", "TrainingDiverged", "decision_grid", "learning_rate", "moons_demo", "svm_loss", "train_steps"]


@dataclass(frozen=True)
class StepResult:
    """One training step: its index, loss, accuracy and learning rate."""

    step: int
    loss: float
    accuracy: float
    learning_rate: float


def svm_loss(model: MLP, X: Any, y: Any, alpha: float = 1e-4) -> tuple[Value, float]:
    """micrograd's demo loss: mean SVM max-margin hinge + ``alpha`` * L2, and the accuracy.

    ``y`` holds labels -1 / +1. The expression is built in micrograd's order, so with micrograd's
    weights it gives micrograd's loss to the last bit. Its last three nodes are labelled
    ``data_loss``, ``reg_loss`` and ``loss`` (the returned Value).

    Examples
    --------
    >>> import random, numpy as np
    >>> from graphtrace.nn import MLP
    >>> random.seed(0)
    >>> loss, acc = svm_loss(MLP(2, [4, 1]), np.array([[0.5, -0.5], [1.0, 1.0]]), np.array([1, -1]))
    >>> loss.op, loss.label, 0.0 <= acc <= 1.0
    ('+', 'loss', True)
    """
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores, strict=True)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum(p * p for p in model.parameters())
    total_loss = data_loss + reg_loss
    for term, name in ((data_loss, "data_loss"), (reg_loss, "reg_loss"), (total_loss, "loss")):
        if isinstance(term, Value):  # (named on the page and in the frames)
            term.label = name
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores, strict=True)]
    return total_loss, float(sum(accuracy)) / len(accuracy)


def moons_demo(samples: int = 100, seed: int = 1337, hidden: Sequence[int] = (16, 16)) -> tuple[MLP, Any, Any]:
    """micrograd's demo setup: seeded moons (labels -1/+1) and ``MLP(2, [*hidden, 1])``.

    Seeds numpy's and Python's global generators with ``seed`` first, as micrograd's demo does.

    Examples
    --------
    >>> model, X, y = moons_demo(samples=10, hidden=(4,))
    >>> X.shape, sorted(set(y.tolist())), len(model.parameters())
    ((10, 2), [-1, 1], 17)
    """
    np.random.seed(seed)
    random.seed(seed)
    X, y = make_moons(n_samples=samples, noise=0.1)
    y = y * 2 - 1
    model = MLP(2, [*hidden, 1])
    return model, X, y


def learning_rate(k: int, steps: int = 100, lr: float = 1.0) -> float:
    """The demo's schedule at step ``k`` of ``steps``: ``lr * (1 - 0.9 * k / max(steps, 100))``.

    micrograd's demo uses ``1.0 - 0.9 * k / 100`` for its 100 steps; a run of up to 100 steps uses exactly
    that (any prefix of micrograd's run is reproduced to the last bit), a longer one stretches it over its
    own length, so the rate falls from ``lr`` to ``0.1 * lr`` at the last step and never turns negative
    (micrograd's formula does at step 112: gradient ascent).

    Examples
    --------
    >>> learning_rate(0), learning_rate(50), learning_rate(2, steps=3)
    (1.0, 0.55, 0.982)
    >>> learning_rate(299, steps=300) > 0
    True
    """
    return lr * (1.0 - 0.9 * k / max(steps, 100))  # (times 1.0 is exact: micrograd's bits)


class TrainingDiverged(FloatingPointError):
    """The loss of a training step is NaN or infinite: :func:`train_steps` stops before updating."""

    def __init__(self, step: int, loss: float, lr: float) -> None:
        super().__init__(
            f"the loss became {loss!r} at step {step} (learning rate {lr:g}); training stopped before the "
            "update. Try a smaller learning rate (--lr) or fewer steps."
        )
        self.step = step
        self.loss = loss
        self.learning_rate = lr


def train_steps(
    model: MLP, X: Any, y: Any, steps: int = 100, *, run: Any = None, lr: float = 1.0
) -> Iterator[StepResult]:
    """Forward, backward and SGD with the demo's schedule (:func:`learning_rate`); yields each step.

    ``run``: a :class:`graphtrace.runs.Run` (from :func:`graphtrace.record`) that logs every step.
    ``lr``: the starting learning rate (micrograd's: 1.0).

    Raises
    ------
    TrainingDiverged
        When a step's loss is NaN or infinite: that step is logged to ``run`` (so the run shows it), no
        update is applied, and nothing more is yielded.

    Examples
    --------
    >>> model, X, y = moons_demo(samples=20, hidden=(8,))
    >>> steps = list(train_steps(model, X, y, steps=3))
    >>> [s.step for s in steps], steps[-1].learning_rate
    ([0, 1, 2], 0.982)
    """
    for k in range(steps):
        total_loss, acc = svm_loss(model, X, y)
        model.zero_grad()
        total_loss.backward()
        rate = learning_rate(k, steps, lr)
        if not math.isfinite(total_loss.data):
            if run is not None:
                run.log(k, total_loss, accuracy=acc, learning_rate=rate)
            raise TrainingDiverged(k, total_loss.data, rate)
        for p in model.parameters():
            p.data -= rate * p.grad
        if run is not None:
            run.log(k, total_loss, accuracy=acc, learning_rate=rate)
        yield StepResult(k, total_loss.data, acc, rate)


def decision_grid(model: Callable[[list[Any]], Any], X: Any, h: float = 0.25) -> tuple[Any, Any, Any]:
    """Scores of ``model`` on a grid around ``X`` (evaluated under ``no_grad``): ``xx, yy, Z``.

    ``Z`` holds ``score > 0`` for each grid point, ready for ``plt.contourf(xx, yy, Z)``.

    Examples
    --------
    >>> model, X, y = moons_demo(samples=10, hidden=(4,))
    >>> xx, yy, Z = decision_grid(model, X, h=0.5)
    >>> xx.shape == yy.shape == Z.shape, Z.dtype.name
    (True, 'bool')
    """
    x_min, x_max = X[:, 0].min() - 1, X[:, 0].max() + 1
    y_min, y_max = X[:, 1].min() - 1, X[:, 1].max() + 1
    xx, yy = np.meshgrid(np.arange(x_min, x_max, h), np.arange(y_min, y_max, h))
    with no_grad():
        scores = [model([Value(a), Value(b)]).data for a, b in np.c_[xx.ravel(), yy.ravel()]]
    Z = (np.array(scores) > 0).reshape(xx.shape)
    return xx, yy, Z

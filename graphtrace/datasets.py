"""Small datasets for demos: ``make_moons``, written to match scikit-learn's draw for draw."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["make_moons"]


def make_moons(
    n_samples: int = 100, noise: float | None = None, random_state: int | np.random.RandomState | None = None
) -> tuple[Any, Any]:
    """Two interleaving half circles, exactly as ``sklearn.datasets.make_moons`` (shuffled) draws them.

    With ``random_state=None`` it draws from numpy's global RandomState, so ``np.random.seed(1337)``
    followed by ``make_moons(100, noise=0.1)`` gives micrograd's demo data.

    Parameters
    ----------
    n_samples : int
        Total number of points (outer moon gets ``n_samples // 2``).
    noise : float, optional
        Standard deviation of Gaussian noise added to the points.
    random_state : int, RandomState or None

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : ndarray of shape (n_samples,) with labels 0 and 1

    Examples
    --------
    >>> import numpy as np
    >>> from graphtrace.datasets import make_moons
    >>> X, y = make_moons(6, noise=0.1, random_state=0)
    >>> X.shape, sorted(y.tolist())
    ((6, 2), [0, 0, 0, 1, 1, 1])
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"make_moons: n_samples must be an int >= 2, got {n_samples!r}")
    if noise is not None and not noise >= 0:
        raise ValueError(f"make_moons: noise must be >= 0, got {noise!r}")
    if random_state is None:
        rs = np.random.mtrand._rand
    elif isinstance(random_state, np.random.RandomState):
        rs = random_state
    else:
        rs = np.random.RandomState(random_state)
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer_x = np.cos(np.linspace(0, np.pi, n_out))
    outer_y = np.sin(np.linspace(0, np.pi, n_out))
    inner_x = 1 - np.cos(np.linspace(0, np.pi, n_in))
    inner_y = 1 - np.sin(np.linspace(0, np.pi, n_in)) - 0.5
    X = np.vstack([np.append(outer_x, inner_x), np.append(outer_y, inner_y)]).T
    y = np.hstack([np.zeros(n_out, dtype=np.intp), np.ones(n_in, dtype=np.intp)])
    idx = np.arange(n_samples)
    rs.shuffle(idx)
    X, y = X[idx], y[idx]
    if noise is not None:
        X = X + rs.normal(scale=noise, size=X.shape)
    return X, y

"""A micrograd-compatible neural-network library: Module, Neuron, Layer, MLP.

Initialisation is micrograd's, in the same order: one ``random.uniform(-1, 1)`` per weight, bias 0,
so with the same ``random.seed`` a model has micrograd's weights and produces its loss curve.
Weights and biases are recorded with role ``"parameter"`` so exports can colour them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .value import Value

__all__ = ["ACTIVATIONS", "MLP", "Layer", "Module", "Neuron"]

ACTIVATIONS = ("relu", "tanh", "linear")


class Module:
    """Base class: ``parameters()`` and ``zero_grad()``.

    Examples
    --------
    >>> from graphtrace.nn import MLP
    >>> m = MLP(2, [3, 1])
    >>> len(m.parameters())
    13
    >>> m.zero_grad()
    """

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0.0."""
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list[Value]:
        """All trainable Values, in micrograd's order."""
        return []


def _activation(nonlin: bool, activation: str | None) -> str:
    if activation is None:
        return "relu" if nonlin else "linear"
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


def _check_count(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive int, got {n!r}")
    return n


class Neuron(Module):
    """``act(b + sum(w_i * x_i))`` with micrograd's initialisation.

    Parameters
    ----------
    nin : int
        Number of inputs.
    nonlin : bool, optional
        micrograd's switch: ReLU if True (default), linear if False.
    activation : {"relu", "tanh", "linear"}, optional
        Overrides ``nonlin`` when given.

    Examples
    --------
    >>> import random
    >>> from graphtrace.nn import Neuron
    >>> random.seed(0)
    >>> n = Neuron(2, activation="tanh")
    >>> n
    TanhNeuron(2)
    >>> out = n([1.0, -2.0])
    >>> out.op
    'tanh'
    """

    def __init__(self, nin: int, nonlin: bool = True, *, activation: str | None = None) -> None:
        nin = _check_count("nin", nin)
        self.activation = _activation(nonlin, activation)
        self.nonlin = self.activation != "linear"
        self.w = [Value(random.uniform(-1, 1), role="parameter") for _ in range(nin)]
        self.b = Value(0, role="parameter")

    def __call__(self, x: Sequence[Any] | Value) -> Value:
        if isinstance(x, Value):  # the output of a width-1 layer
            x = [x]
        if len(x) != len(self.w):
            raise ValueError(f"Neuron expects {len(self.w)} inputs, got {len(x)}")
        act = sum((wi * xi for wi, xi in zip(self.w, x, strict=True)), self.b)
        if self.activation == "relu":
            return act.relu()
        if self.activation == "tanh":
            return act.tanh()
        return act

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]

    def __repr__(self) -> str:
        kind = {"relu": "ReLU", "tanh": "Tanh", "linear": "Linear"}[self.activation]
        return f"{kind}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` Neurons over the same inputs; returns one Value if ``nout == 1``, else a list.

    Examples
    --------
    >>> from graphtrace.nn import Layer
    >>> Layer(3, 2, nonlin=False)
    Layer of [LinearNeuron(3), LinearNeuron(3)]
    """

    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        nout = _check_count("nout", nout)
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Any] | Value) -> Any:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron: hidden layers use ``activation`` (ReLU), the last is linear.

    Examples
    --------
    >>> import random
    >>> from graphtrace.nn import MLP
    >>> random.seed(1337)
    >>> model = MLP(2, [16, 16, 1])
    >>> len(model.parameters())
    337
    >>> round(model.layers[0].neurons[0].w[0].data, 6)
    0.235506
    """

    def __init__(self, nin: int, nouts: Sequence[int], *, activation: str = "relu") -> None:
        nin = _check_count("nin", nin)
        if isinstance(nouts, (str, bytes)) or not isinstance(nouts, Sequence) or not nouts:
            raise ValueError(f"nouts must be a non-empty sequence of layer sizes, got {nouts!r}")
        _activation(True, activation)
        sz = [nin, *nouts]
        self.layers = [
            Layer(sz[i], sz[i + 1], activation=activation if i != len(nouts) - 1 else "linear")
            for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence[Any] | Value) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"

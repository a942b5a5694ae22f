"""A micrograd-compatible neural-network library: Module, Neuron, Layer, MLP.

Initialisation is micrograd's, in the same order: one ``random.uniform(-1, 1)`` per weight, bias 0,
so with the same ``random.seed`` a model has micrograd's weights and produces its loss curve.
Weights and biases are recorded with role ``"parameter"`` so exports can colour them.
"""

from __future__ import annotations

import functools
import random
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from .scopes import module_call
from .value import Value

__all__ = ["ACTIVATIONS", "MLP", "Layer", "Module", "Neuron"]

ACTIVATIONS = ("relu", "tanh", "linear")


#: parameter -> (label, scope) that naming gave it, so a later (outer) naming may replace only those
_AUTO: weakref.WeakKeyDictionary[Value, tuple[str, str]] = weakref.WeakKeyDictionary()


def _children(obj: Module) -> Iterator[tuple[str, str, str, Any]]:
    """``(dotted name, short name, scope segment, member)`` for each Module or Value an attribute of
    ``obj`` holds directly or in a list/tuple, in attribute order."""
    for attr, value in vars(obj).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, Module):
            yield attr, attr, attr, value
        elif isinstance(value, Value):
            yield attr, attr, "", value
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, Module):
                    yield f"{attr}.{i}", f"{attr[:1].upper()}{i}", f"{type(item).__name__}{i}", item
                elif isinstance(item, Value):
                    yield f"{attr}.{i}", f"{attr}{i}", "", item


class Module:
    """Base class: ``parameters()``, ``zero_grad()``, names and scopes.

    Every subclass gets, without writing anything for it:

    * ``named_parameters()`` / ``named_modules()`` with PyTorch-style dotted names
      (``layers.0.neurons.3.w.1``);
    * default parameter labels after those names, short (``L0.N3.w1``, ``L0.N3.b``: the first letter of
      a list attribute in capitals and the index, then the parameter's attribute and index), set when
      the outermost module is built; a label a user set is never overwritten;
    * a scope per call: the subclass's ``__call__`` runs inside :func:`graphtrace.scope` of this call
      (``MLP[17]/Layer0/Neuron3``, see :mod:`graphtrace.scope`), and parameters carry their module's
      path (``MLP/Layer0/Neuron3``).

    Examples
    --------
    >>> import random
    >>> from graphtrace.nn import MLP
    >>> random.seed(0)
    >>> m = MLP(2, [3, 1])
    >>> len(m.parameters())
    13
    >>> [name for name, _ in m.named_parameters()][:3], m.parameters()[2].label
    (['layers.0.neurons.0.w.0', 'layers.0.neurons.0.w.1', 'layers.0.neurons.0.b'], 'L0.N0.b')
    >>> m([1.0, 2.0]).scope, m.parameters()[2].scope
    ('MLP[0]/Layer1/Neuron0', 'MLP/Layer0/Neuron0')
    >>> m.zero_grad()
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            cls.__call__ = module_call(cls.__dict__["__call__"])  # type: ignore[method-assign]
        if "__init__" in cls.__dict__:
            init = cls.__dict__["__init__"]

            @functools.wraps(init)
            def named_init(self: Module, *args: Any, **kw: Any) -> None:
                init(self, *args, **kw)
                if type(self).__init__ is named_init:  # the most derived __init__ names once
                    self._name_members()

            cls.__init__ = named_init  # type: ignore[method-assign,assignment]

    @property
    def _scope_name(self) -> str:
        return self.__dict__.get("_scope_segment") or type(self).__name__

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0.0."""
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list[Value]:
        """All trainable Values, in micrograd's order."""
        return []

    def _walk(self) -> Iterator[tuple[str, str, str, Any]]:
        """``(dotted, short, scope path, member)`` of this module, its submodules and their Values."""
        stack: list[tuple[str, str, str, Any]] = [("", "", self._scope_name, self)]
        while stack:
            dotted, short, path, obj = stack.pop()
            yield dotted, short, path, obj
            if isinstance(obj, Module):
                members = []
                for d, s, seg, member in _children(obj):
                    full = f"{dotted}.{d}" if dotted else d
                    brief = f"{short}.{s}" if short else s
                    members.append((full, brief, f"{path}/{seg}" if seg else path, member))
                stack.extend(reversed(members))

    def named_modules(self) -> Iterator[tuple[str, Module]]:
        """``(dotted name, module)`` for this module (name ``""``) and every submodule, depth first.

        Examples
        --------
        >>> from graphtrace.nn import MLP
        >>> [name for name, _ in MLP(2, [2, 1]).named_modules()]
        ['', 'layers.0', 'layers.0.neurons.0', 'layers.0.neurons.1', 'layers.1', 'layers.1.neurons.0']
        """
        for dotted, _, _, obj in self._walk():
            if isinstance(obj, Module):
                yield dotted, obj

    def named_parameters(self) -> Iterator[tuple[str, Value]]:
        """``(dotted name, parameter)`` in ``parameters()`` order.

        Examples
        --------
        >>> from graphtrace.nn import Neuron
        >>> [(name, p.label) for name, p in Neuron(2).named_parameters()]
        [('w.0', 'w0'), ('w.1', 'w1'), ('b', 'b')]
        """
        names = {id(obj): dotted for dotted, _, _, obj in self._walk() if isinstance(obj, Value)}
        for i, p in enumerate(self.parameters()):
            yield names.get(id(p), f"parameters.{i}"), p

    def _name_members(self) -> None:
        """Give submodules their scope segment, and parameters their default label and module path."""
        params = {id(p) for p in self.parameters()}
        for _, short, path, obj in self._walk():
            if isinstance(obj, Module):
                if obj is not self:
                    obj.__dict__["_scope_segment"] = path.rsplit("/", 1)[-1]
                continue
            if id(obj) not in params:
                continue
            module_path = path
            label, old_scope = _AUTO.get(obj, ("", ""))
            if obj.label in ("", label):
                obj.label = short
            if obj.scope in ("", old_scope):
                obj._set_scope(module_path)
            _AUTO[obj] = (short, module_path)


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

"""The registry of methods by name: ``register``, ``get``, ``names``."""

from __future__ import annotations

import difflib

from camkit.methods.base import Method

__all__ = ["get", "names", "register", "unregister"]

_METHODS: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
    """Make ``method`` available by its name (``Explainer(method=name)``); returns it.

    A name already registered is refused unless ``replace=True``.
    """
    if not isinstance(method, Method):
        raise TypeError(f"register() takes a camkit.methods.Method, got {type(method).__name__}")
    if method.name in _METHODS and not replace:
        raise ValueError(
            f"method {method.name!r} is already registered; pass replace=True to redefine it"
        )
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> Method:
    """Remove a registered method (tests, plug-ins); returns it."""
    method = get(name)
    del _METHODS[method.name]
    return method


def get(name: str | Method) -> Method:
    """The registered method called ``name`` (a :class:`Method` is returned as it is).

    An unknown name raises ``ValueError`` naming it, up to five close matches and the choices.
    """
    if isinstance(name, Method):
        return name
    if isinstance(name, str) and name in _METHODS:
        return _METHODS[name]
    close = difflib.get_close_matches(str(name), list(_METHODS), n=5)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ValueError(f"unknown method {name!r}{hint}; choose one of {', '.join(_METHODS)}")


def names(needs: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The registered method names, in registration order (built-ins first); with ``needs``,
    only the methods whose ``needs`` is one of them."""
    return tuple(n for n, m in _METHODS.items() if needs is None or m.needs in needs)

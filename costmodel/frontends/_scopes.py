"""Module scopes for the trace frontend: which ``nn.Module`` call each recorded operator ran in.

``torch.export`` records every node's module stack (``nn_module_stack``), whose innermost entry is
the qualified name of the module whose ``forward`` issued the operator (``layer1.0.conv1``). The
trace runs the module under a dispatch mode that sees only ATen calls, so without help its graphs
carry no scopes, and whatever reads them (the timeline's host lane, which counts the Python module
calls from the scopes in execution order where a graph records no count) sees none. This module
keeps the same names during a trace: a global forward pre-hook pushes the called module's qualified
name, a forward hook (``always_call``, so an exception unwinds it too) pops it, and the recorder
reads the top.

A module called by its parent is named by that path (``blocks.0.act`` for an activation the model
shares between blocks, as ``torch.export`` names it); one called from elsewhere takes its first name in
``named_modules(remove_duplicate=False)``; a module outside the tree (built inside a ``forward``) keeps
its caller's scope and is not counted. Only calls on
the capturing thread count: the hooks are global, and another thread may run modules meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class ScopeRecorder:
    """What the hooks saw: :meth:`current` is the qualified name of the innermost module of the
    model running on the capturing thread (``""`` at the top level); :attr:`calls` counts the calls
    of the model's submodules (the root's own call not included), each call of a module that runs
    twice (a shared activation) counted twice.

    Modules are known by their attribute dictionary: ``torch.export`` calls proxies of the model's
    modules when one is shared (objects of another class that share the module's ``__dict__``),
    inside wrappers of its own, which are not counted."""

    def __init__(self, model) -> None:
        self.names: dict[int, str] = {}
        self.children: dict[int, dict[int, str]] = {}
        for name, mod in model.named_modules(remove_duplicate=False):
            self.names.setdefault(id(mod.__dict__), name)
            kids = self.children.setdefault(id(mod.__dict__), {})
            for attr, child in mod._modules.items():
                if child is not None:
                    kids.setdefault(id(child.__dict__), attr)
        # (qualified name, module key) per running call; None: a module outside the model (a wrapper)
        self.stack: list[tuple[str, int] | None] = []
        # per running call, the innermost entry of ``stack`` up to it that is not None (what ``current`` reads)
        self._tops: list[tuple[str, int] | None] = []
        self.calls = 0
        self.owner = threading.get_ident()

    def _caller(self) -> tuple[str, int] | None:
        return self._tops[-1] if self._tops else None

    def current(self) -> str:
        top = self._caller()
        return top[0] if top is not None else ""

    def _pre(self, mod, args) -> None:
        if threading.get_ident() != self.owner:
            return
        key = id(mod.__dict__)
        name = self.names.get(key)
        caller = self._caller()
        if name is not None and caller is not None:
            attr = self.children[caller[1]].get(key)
            if attr is not None:  # named by the path it is called through, as torch.export names it
                name = f"{caller[0]}.{attr}" if caller[0] else attr
        if name:
            self.calls += 1
        entry = (name, key) if name is not None else None
        self.stack.append(entry)
        self._tops.append(entry if entry is not None else caller)

    def _post(self, mod, args, out) -> None:
        if threading.get_ident() == self.owner and self.stack:
            self.stack.pop()
            self._tops.pop()


@contextlib.contextmanager
def recording_scopes(model) -> Iterator[ScopeRecorder]:
    """A :class:`ScopeRecorder` of ``model``'s module calls within the block."""
    import torch

    rec = ScopeRecorder(model)
    hooks = torch.nn.modules.module
    h_pre = hooks.register_module_forward_pre_hook(rec._pre)
    h_post = hooks.register_module_forward_hook(rec._post, always_call=True)
    try:
        yield rec
    finally:
        h_pre.remove()
        h_post.remove()

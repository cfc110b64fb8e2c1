"""What other compiled graphs keep allocated while a graph runs: their parameters and buffers (and in
training their gradients and optimizer state), and the activations the earlier parts of a training step
saved for their backward pass."""

from __future__ import annotations

from typing import Any, NamedTuple


class Held(NamedTuple):
    """What other compiled graphs keep allocated while a graph runs (:class:`HeldState`): ``mb`` of
    ``tensors`` parameters and buffers (in training with their gradients and optimizer state), and the
    activations that earlier graphs of a training step saved for their backward pass, ``saved_mb`` at
    the batch compiled, ``saved_per_sample_mb`` for each sample of a batch."""

    mb: float = 0.0
    tensors: int = 0
    saved_mb: float = 0.0
    saved_per_sample_mb: float = 0.0


class HeldState:
    """The parameters and buffers of every graph a backend compiled, held weakly: while they live they take
    device memory when another graph runs (the graphs before a graph break keep their weights, and in
    training their gradients and optimizer state, while the graphs after it run), so each graph's check
    adds those of the others to its own memory; and in training the activations that the graphs before
    it in the step saved for their backward pass (:meth:`earlier_saved`)."""

    def __init__(self):
        import weakref

        self._ref = weakref.ref
        self._held: dict[int, tuple[Any, bool]] = {}  # id -> (weak reference, trained)
        self._parts: list[dict] = []  # training graphs, one per part of a step, in the order compiled

    def others_mb(self, state: list, training: bool) -> tuple[float, int]:
        """``(MB, number of tensors)`` held by the other graphs' state, not in ``state`` (this graph's):
        a weight, and when training, its gradient and Adam's two moments where it is trained; then
        ``state`` is recorded."""
        mine = {id(t) for t in state}
        total, count = 0.0, 0
        for key, (ref, trained) in list(self._held.items()):
            t = ref()
            if t is None:
                del self._held[key]
            elif key not in mine:
                total += _nbytes(t) * (4 if training and trained else 1) / 2**20
                count += 1
        for t in state:
            try:
                self._held[id(t)] = (self._ref(t), training and bool(getattr(t, "requires_grad", False)))
            except TypeError:  # not weakly referenceable: not recorded
                continue
        return total, count

    def earlier_saved(self, state: list, saved_mb: float, batch: int, history: bool) -> tuple[float, float]:
        """``(MB, MB per sample)`` of the activations that the earlier parts of a training step keep for their
        backward pass while this training graph runs; then this graph is recorded (``state``: its
        parameters and buffers; ``saved_mb``: what its own forward pass saves at ``batch``).

        Parts are told apart by their parameters: a graph that shares one with a part recorded before is a
        recompile of that part (another batch, a new guard) and takes its place; one that shares none is
        the next part. Only the parts before this one count, and only where this graph's inputs carry an
        autograd history (``history``: a part before it ran in this step and has its backward pending;
        autograd frees a later part's activations before an earlier part's backward runs). A graph with
        no parameters or buffers is not told apart, and counts nothing."""
        mine = {id(t) for t in state}
        if not mine:
            return 0.0, 0.0
        self._parts = [p for p in self._parts if p["alive"]() is not None]
        j = next((i for i, p in enumerate(self._parts) if p["ids"] & mine), len(self._parts))
        before = self._parts[:j] if history else []
        mb = sum(p["mb"] for p in before)
        per_sample = sum(p["mb"] / max(p["batch"], 1) for p in before)
        alive = None
        for t in state:  # one of its tensors, held weakly, says whether the part is still there
            try:
                alive = self._ref(t)
                break
            except TypeError:
                continue
        if alive is not None:
            part = {"ids": mine, "mb": max(saved_mb, 0.0), "batch": batch, "alive": alive}
            if j < len(self._parts):
                part["ids"] = self._parts[j]["ids"] | mine
                self._parts[j] = part
            else:
                self._parts.append(part)
        return mb, per_sample


def _output_mb(gm) -> float:
    """MB of the tensors a Dynamo graph returns (its output node's example values): what the next graph
    takes as its input, so not counted among the activations its forward pass saves."""
    import torch
    from torch.utils._pytree import tree_leaves

    try:
        out = gm.graph.output_node().args
    except Exception:  # noqa: BLE001 - not an FX graph with an output node
        return 0.0
    vals = [a.meta.get("example_value") for a in tree_leaves(out) if hasattr(a, "meta")]
    return sum(_nbytes(v) for v in vals if isinstance(v, torch.Tensor)) / 2**20


def _nbytes(t) -> int:
    try:
        return int(t.numel()) * int(t.element_size())
    except Exception:  # noqa: BLE001 - a tensor subclass without a size: counted as nothing
        return 0

"""A model of PyTorch's CUDA caching allocator, replayed over an allocation trace.

``torch.cuda.max_memory_reserved()`` (what the process holds from the driver) is
not the sum of live tensors: the caching allocator rounds every request, carves
requests out of larger segments it obtained with ``cudaMalloc``, keeps freed
blocks cached for reuse, and only splits a cached block when the remainder is
worth keeping. This module replays an ordered stream of allocations and frees
through those rules and returns the allocated peak (what
``max_memory_allocated()`` reports), the reserved peak and the fragmentation.

The rules (``c10/cuda/CUDACachingAllocator.cpp``, documented in the PyTorch
notes on CUDA memory management), with ``expandable_segments`` off:

* every request is rounded up to a multiple of 512 bytes (512 at least);
* requests of at most 1 MiB come from the *small* pool, larger ones from the
  *large* pool; the pools never share a block;
* a request is served by the smallest cached free block of its pool that is
  large enough (best fit; ties go to the lower address);
* only when no cached block fits, a new segment is obtained: 2 MiB for a small
  request, 20 MiB for a large request under 10 MiB, otherwise the request
  rounded up to a multiple of 2 MiB;
* the block found is split when the remainder is at least 512 bytes (small
  pool) or more than 1 MiB (large pool); otherwise the whole block is handed
  out and counted as allocated;
* a freed block merges with free neighbours of the same segment;
* ``empty_cache()`` returns every segment with no allocated block to the
  driver.

With ``expandable_segments=True`` each pool holds one segment that grows (and
is reserved) as its tail is needed, in pages of the pool's segment size: 2 MiB
for the small pool, 20 MiB for the large one (``find_expandable_block`` makes
the large pool's ``ExpandableSegment`` with ``kLargeBuffer`` pages). A large
request of 10 MiB or more no longer gets a segment of its own, and freed space
is reused across what would have been separate segments; the best-fit search
and splitting are the same, except that a block is split whenever the
remainder is at least 512 bytes in either pool.

The reserved peak is a lower bound on what the driver reports: the CUDA
context, the libraries' own allocations and NVML's view of them sit outside
the allocator (see :mod:`costmodel.analysis.memory_replay` for how those
overheads are added per device).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from .._errors import InvalidInputError

__all__ = [
    "AllocatorStats",
    "CachingAllocator",
    "Event",
    "replay",
    "round_size",
    "segment_size",
    "MIN_BLOCK",
    "SMALL_SIZE",
    "SMALL_BUFFER",
    "LARGE_BUFFER",
    "MIN_LARGE_ALLOC",
    "ROUND_LARGE",
]

MIB = 1 << 20
#: every block is a multiple of this many bytes
MIN_BLOCK = 512
#: requests up to this size come from the small pool
SMALL_SIZE = 1 * MIB
#: segment size of the small pool
SMALL_BUFFER = 2 * MIB
#: segment size for large requests under MIN_LARGE_ALLOC
LARGE_BUFFER = 20 * MIB
MIN_LARGE_ALLOC = 10 * MIB
#: larger requests get a segment of their own, rounded to this
ROUND_LARGE = 2 * MIB


def page_size(small: bool) -> int:
    """The granule an expandable segment of the small or the large pool maps (and reserves) at a time."""
    return SMALL_BUFFER if small else LARGE_BUFFER


def round_size(nbytes: int) -> int:
    """The block size a request of ``nbytes`` occupies: a multiple of 512, at least 512."""
    if nbytes < MIN_BLOCK:
        return MIN_BLOCK
    return -(-nbytes // MIN_BLOCK) * MIN_BLOCK


def segment_size(nbytes: int) -> int:
    """The ``cudaMalloc`` size the allocator asks for when no cached block fits a (rounded) request."""
    if nbytes <= SMALL_SIZE:
        return SMALL_BUFFER
    if nbytes < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-nbytes // ROUND_LARGE) * ROUND_LARGE


@dataclass(frozen=True)
class Event:
    """One allocator call: ``kind`` is ``alloc``, ``free``, ``empty_cache``, ``reset_peak`` or
    ``workspace``.

    ``key`` identifies the allocation (the storage) so that its free can find it;
    ``phase`` and ``op`` say what made it (kept for reports, not used by the replay).
    ``workspace`` marks where the device's library workspace is allocated (its size is
    a property of the device, given to :meth:`CachingAllocator.apply`).
    """

    kind: str
    key: int = 0
    nbytes: int = 0
    phase: str = ""
    op: str = ""


def saved_bytes(events) -> int:
    """Bytes the last training step's forward pass allocated that are still live when its backward pass
    begins (what autograd saved for it, with the loss): the live bytes at the first event of the last
    backward phase less those at the forward phase's first allocation (after ``zero_grad`` freed the
    gradients); 0 without a backward."""
    size: dict[int, int] = {}
    live, phase, start, saved = 0, "", None, 0
    for e in events:
        if e.kind not in ("alloc", "free"):
            continue
        if e.phase != phase:
            if e.phase == "forward":
                start = None
            elif e.phase == "backward" and start is not None:
                saved = live - start
            phase = e.phase
        if e.kind == "alloc":
            if phase == "forward" and start is None:
                start = live
            size[e.key] = e.nbytes
            live += e.nbytes
        else:
            live -= size.pop(e.key, 0)
    return max(saved, 0)


@dataclass
class AllocatorStats:
    """What a replay ends with: the peaks PyTorch's memory statistics would report."""

    peak_allocated_bytes: int = 0  # max_memory_allocated(): rounded (and unsplit) block sizes in use
    peak_reserved_bytes: int = 0  # max_memory_reserved(): segment bytes held from the driver
    peak_requested_bytes: int = 0  # the tensors' own sizes, unrounded
    allocated_bytes: int = 0  # at the end of the trace
    reserved_bytes: int = 0
    requested_bytes: int = 0
    segments: int = 0  # cudaMalloc calls over the replay
    allocations: int = 0
    peak_phase: str = ""  # the phase of the allocation that set the allocated peak
    peak_op: str = ""
    oom: bool = False  # a capacity was given and the trace did not fit in it
    cache_releases: int = 0  # times the capacity made the allocator release its cached segments

    @property
    def fragmentation(self) -> float:
        """Share of the reserved peak never holding allocated data at the allocated peak (0 .. 1)."""
        if self.peak_reserved_bytes <= 0:
            return 0.0
        return max(0.0, 1.0 - self.peak_allocated_bytes / self.peak_reserved_bytes)

    def to_dict(self) -> dict:
        mib = float(MIB)
        return {
            "allocated_mb": self.peak_allocated_bytes / mib,
            "reserved_mb": self.peak_reserved_bytes / mib,
            "requested_mb": self.peak_requested_bytes / mib,
            "fragmentation": self.fragmentation,
            "segments": self.segments,
            "allocations": self.allocations,
            "peak_phase": self.peak_phase,
            "peak_op": self.peak_op,
            "oom": self.oom,
            "cache_releases": self.cache_releases,
        }


class _Block:
    __slots__ = ("segment", "offset", "size", "free", "prev", "next", "requested")

    def __init__(self, segment: int, offset: int, size: int, free: bool = True):
        self.segment = segment
        self.offset = offset
        self.size = size
        self.free = free
        self.prev: _Block | None = None
        self.next: _Block | None = None
        self.requested = 0

    def sort_key(self) -> tuple[int, int, int]:
        return (self.size, self.segment, self.offset)


class _Pool:
    """The free blocks of one pool, ordered by (size, address) for best fit."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int, int]] = []
        self.blocks: dict[tuple[int, int, int], _Block] = {}

    def add(self, b: _Block) -> None:
        k = b.sort_key()
        bisect.insort(self.keys, k)
        self.blocks[k] = b

    def remove(self, b: _Block) -> None:
        k = b.sort_key()
        i = bisect.bisect_left(self.keys, k)
        del self.keys[i]
        del self.blocks[k]

    def best_fit(self, size: int) -> _Block | None:
        i = bisect.bisect_left(self.keys, (size, -1, -1))
        if i == len(self.keys):
            return None
        return self.blocks[self.keys[i]]


class CachingAllocator:
    """The caching allocator's state; call :meth:`malloc`, :meth:`free`, :meth:`empty_cache`.

    Args:
        expandable_segments: model ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``.
        capacity_bytes: what the driver can give (``None``: unlimited). When a new
            segment does not fit, cached free segments are released first (as
            PyTorch does before it raises an out-of-memory error); if it still does
            not fit the replay records ``oom`` and carries on as if it had fitted,
            so that the peaks say how much would have been needed.
    """

    def __init__(self, *, expandable_segments: bool = False, capacity_bytes: int | None = None):
        if capacity_bytes is not None and capacity_bytes <= 0:
            raise InvalidInputError(f"capacity_bytes must be positive, got {capacity_bytes!r}")
        self.expandable = bool(expandable_segments)
        self.capacity = capacity_bytes
        self.pools = {True: _Pool(), False: _Pool()}  # is_small -> free blocks
        self.segments: dict[int, list] = {}  # id -> [is_small, size, first block]
        self.tails: dict[bool, int] = {}  # expandable: pool -> its one segment id
        self.live: dict[int, _Block] = {}
        self._ids = itertools.count()
        self.stats = AllocatorStats()

    # ------------------------------------------------------------ accounting
    def _reserve(self, nbytes: int) -> None:
        s = self.stats
        if self.capacity is not None and s.reserved_bytes + nbytes > self.capacity:
            s.cache_releases += 1
            self.empty_cache()
            if s.reserved_bytes + nbytes > self.capacity:
                s.oom = True
        s.reserved_bytes += nbytes
        s.peak_reserved_bytes = max(s.peak_reserved_bytes, s.reserved_bytes)

    def _new_segment(self, small: bool, size: int) -> _Block:
        self._reserve(size)
        sid = next(self._ids)
        b = _Block(sid, 0, size)
        self.segments[sid] = [small, size, b]
        self.stats.segments += 1
        return b

    # -------------------------------------------------------------- requests
    def malloc(self, key: int, nbytes: int, phase: str = "", op: str = "") -> None:
        if nbytes < 0:
            raise InvalidInputError(f"allocation {key}: negative size {nbytes}")
        if key in self.live:
            raise InvalidInputError(f"allocation {key} is already live (a trace must free before it reuses a key)")
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        pool = self.pools[small]
        block = pool.best_fit(size)
        if block is not None:
            pool.remove(block)
        elif self.expandable:
            block = self._grow(small, size)
        else:
            block = self._new_segment(small, segment_size(size))
        remaining = block.size - size
        if remaining >= MIN_BLOCK if (small or self.expandable) else remaining > SMALL_SIZE:
            rest = _Block(block.segment, block.offset + size, remaining)
            rest.prev, rest.next = block, block.next
            if block.next is not None:
                block.next.prev = rest
            block.next = rest
            block.size = size
            pool.add(rest)
        block.free = False
        block.requested = nbytes
        self.live[key] = block
        s = self.stats
        s.allocations += 1
        s.allocated_bytes += block.size
        s.requested_bytes += nbytes
        s.peak_requested_bytes = max(s.peak_requested_bytes, s.requested_bytes)
        if s.allocated_bytes > s.peak_allocated_bytes:
            s.peak_allocated_bytes = s.allocated_bytes
            s.peak_phase, s.peak_op = phase, op

    def _grow(self, small: bool, size: int) -> _Block:
        """Expandable segments: extend the pool's one segment by whole pages at its tail."""
        page = page_size(small)
        sid = self.tails.get(small)
        if sid is None:
            grow = -(-size // page) * page
            b = self._new_segment(small, grow)
            self.tails[small] = b.segment
            return b
        seg = self.segments[sid]
        last = seg[2]
        while last.next is not None:
            last = last.next
        have = last.size if last.free else 0
        grow = -(-(size - have) // page) * page
        self._reserve(grow)
        seg[1] += grow
        if last.free:
            self.pools[small].remove(last)
            last.size += grow
            return last
        b = _Block(sid, last.offset + last.size, grow)
        b.prev, last.next = last, b
        return b

    def free(self, key: int) -> None:
        block = self.live.pop(key, None)
        if block is None:
            raise InvalidInputError(f"free of allocation {key}, which is not live")
        s = self.stats
        s.allocated_bytes -= block.size
        s.requested_bytes -= block.requested
        block.free = True
        block.requested = 0
        small = self.segments[block.segment][0]
        pool = self.pools[small]
        for nb in (block.prev, block.next):
            if nb is not None and nb.free:
                pool.remove(nb)
                if nb is block.prev:
                    nb.size += block.size
                    nb.next = block.next
                    if block.next is not None:
                        block.next.prev = nb
                    block = nb
                else:
                    block.size += nb.size
                    block.next = nb.next
                    if nb.next is not None:
                        nb.next.prev = block
        if block.prev is None:
            self.segments[block.segment][2] = block
        pool.add(block)

    def empty_cache(self) -> None:
        """Return every segment that holds no allocated block to the driver."""
        for sid, (small, size, first) in list(self.segments.items()):
            if first.free and first.next is None:
                self.pools[small].remove(first)
                del self.segments[sid]
                if self.tails.get(small) == sid:
                    del self.tails[small]
                self.stats.reserved_bytes -= size

    def reset_peak(self) -> None:
        """``torch.cuda.reset_peak_memory_stats()``: the peaks restart from the current values."""
        s = self.stats
        s.peak_allocated_bytes = s.allocated_bytes
        s.peak_reserved_bytes = s.reserved_bytes
        s.peak_requested_bytes = s.requested_bytes
        s.peak_phase = s.peak_op = ""

    def apply(self, events: Iterable[Event], workspace_bytes: int = 0) -> AllocatorStats:
        for e in events:
            if e.kind == "workspace":
                if workspace_bytes > 0:
                    self.malloc(e.key, workspace_bytes, "workspace", "library")
            elif e.kind == "alloc":
                self.malloc(e.key, e.nbytes, e.phase, e.op)
            elif e.kind == "free":
                self.free(e.key)
            elif e.kind == "empty_cache":
                self.empty_cache()
            elif e.kind == "reset_peak":
                self.reset_peak()
            else:
                raise InvalidInputError(f"unknown allocator event {e.kind!r}; expected alloc, free, empty_cache, "
                                        "reset_peak or workspace")
        return self.stats


def replay(events: Iterable[Event], *, expandable_segments: bool = False, capacity_bytes: int | None = None,
           workspace_bytes: int = 0) -> AllocatorStats:
    """Replay ``events`` through a fresh caching allocator and return its statistics; a ``workspace``
    event allocates ``workspace_bytes``."""
    return CachingAllocator(expandable_segments=expandable_segments,
                            capacity_bytes=capacity_bytes).apply(events, workspace_bytes)

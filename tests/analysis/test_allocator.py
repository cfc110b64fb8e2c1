"""The caching-allocator replay against PyTorch's documented rules, on hand-built traces."""

import pytest

from costmodel._errors import InvalidInputError
from costmodel.analysis.allocator import (
    LARGE_BUFFER,
    MIB,
    SMALL_BUFFER,
    CachingAllocator,
    Event,
    replay,
    round_size,
    segment_size,
)


def test_round_size_is_a_multiple_of_512_at_least_512():
    assert round_size(0) == 512
    assert round_size(1) == 512
    assert round_size(512) == 512
    assert round_size(513) == 1024
    assert round_size(4 * 1000) == 4096


def test_segment_sizes_follow_the_pools():
    assert segment_size(512) == SMALL_BUFFER
    assert segment_size(MIB) == SMALL_BUFFER  # 1 MiB is still small
    assert segment_size(MIB + 512) == LARGE_BUFFER
    assert segment_size(10 * MIB - 512) == LARGE_BUFFER
    assert segment_size(10 * MIB) == 10 * MIB  # own segment, rounded to 2 MiB
    assert segment_size(11 * MIB) == 12 * MIB


def test_small_requests_share_one_2mib_segment():
    st = replay([Event("alloc", i, 1000) for i in range(10)])
    assert st.segments == 1
    assert st.peak_reserved_bytes == SMALL_BUFFER
    assert st.peak_allocated_bytes == 10 * 1024  # each rounded to 1024
    assert st.peak_requested_bytes == 10 * 1000


def test_large_requests_are_carved_from_a_20mib_segment():
    st = replay([Event("alloc", i, 4 * MIB) for i in range(5)])
    # 4 x 4 MiB fit in the first 20 MiB segment, the rest (4 MiB) is a split-off remainder > 1 MiB;
    # the fifth request takes that remainder
    assert st.segments == 1
    assert st.peak_reserved_bytes == LARGE_BUFFER
    st = replay([Event("alloc", i, 4 * MIB) for i in range(6)])
    assert st.segments == 2
    assert st.peak_reserved_bytes == 2 * LARGE_BUFFER


def test_large_remainder_of_at_most_1mib_is_not_split_and_counts_as_allocated():
    # a 19.5 MiB request in a 20 MiB segment leaves 0.5 MiB: not split, the whole block is allocated
    st = replay([Event("alloc", 1, 19 * MIB + MIB // 2)])
    assert st.peak_allocated_bytes == LARGE_BUFFER
    st = replay([Event("alloc", 1, 18 * MIB)])
    assert st.peak_allocated_bytes == 18 * MIB


def test_pools_never_share_blocks():
    # a freed large block does not serve a small request
    st = replay([Event("alloc", 1, 4 * MIB), Event("free", 1), Event("alloc", 2, 1000)])
    assert st.segments == 2
    assert st.peak_reserved_bytes == LARGE_BUFFER + SMALL_BUFFER


def test_freed_blocks_are_reused_best_fit():
    a = CachingAllocator()
    a.malloc(1, 8 * MIB)
    a.malloc(2, 4 * MIB)
    a.malloc(3, 6 * MIB)  # 8 + 4 + 6 = 18 MiB of the first segment
    a.free(1)
    a.free(3)  # merges with the 2 MiB tail: an 8 MiB block at offset 12 MiB
    a.malloc(4, 7 * MIB)  # best fit among two 8 MiB blocks: the lower address
    assert a.live[4].offset == 0
    assert a.stats.segments == 1


def test_free_merges_neighbours_and_empty_cache_releases_whole_segments():
    a = CachingAllocator()
    for k in range(3):
        a.malloc(k, 5 * MIB)
    a.malloc(9, 12 * MIB)  # its own segment
    assert a.stats.reserved_bytes == LARGE_BUFFER + 12 * MIB
    for k in (1, 0, 2):
        a.free(k)
    a.empty_cache()  # the 20 MiB segment is whole again and goes back; the 12 MiB one is in use
    assert a.stats.reserved_bytes == 12 * MIB
    assert a.stats.peak_reserved_bytes == LARGE_BUFFER + 12 * MIB
    a.free(9)
    a.empty_cache()
    assert a.stats.reserved_bytes == 0


def test_a_block_in_use_keeps_its_segment_reserved():
    a = CachingAllocator()
    a.malloc(1, 5 * MIB)
    a.malloc(2, 5 * MIB)
    a.free(1)
    a.empty_cache()
    assert a.stats.reserved_bytes == LARGE_BUFFER


def test_expandable_segments_grow_one_segment_instead_of_taking_new_ones():
    ev = [Event("alloc", i, 3 * MIB) for i in range(3)]
    assert replay(ev).peak_reserved_bytes == LARGE_BUFFER
    assert replay(ev, expandable_segments=True).peak_reserved_bytes == LARGE_BUFFER  # one large page holds 9 MiB
    # a request of 10 MiB or more gets no segment of its own: a freed block's space is grown into
    ev = [Event("alloc", 1, 12 * MIB), Event("free", 1), Event("alloc", 2, 14 * MIB)]
    assert replay(ev).peak_reserved_bytes == 26 * MIB
    assert replay(ev, expandable_segments=True).peak_reserved_bytes == LARGE_BUFFER
    # a free tail is extended rather than left behind
    ev = [Event("alloc", 1, 15 * MIB), Event("alloc", 2, 3 * MIB), Event("free", 2), Event("alloc", 3, 8 * MIB)]
    assert replay(ev, expandable_segments=True).peak_reserved_bytes == 2 * LARGE_BUFFER


def test_an_expandable_segment_maps_pages_of_its_pools_segment_size():
    # PyTorch makes the large pool's expandable segment with kLargeBuffer (20 MiB) pages and the small
    # pool's with kSmallBuffer (2 MiB) ones: a 12 MiB request maps one 20 MiB page, not six of 2 MiB
    st = replay([Event("alloc", 1, 12 * MIB)], expandable_segments=True)
    assert st.peak_reserved_bytes == LARGE_BUFFER
    st = replay([Event("alloc", 1, 21 * MIB)], expandable_segments=True)
    assert st.peak_reserved_bytes == 2 * LARGE_BUFFER
    st = replay([Event("alloc", i, 600 * 1024) for i in range(4)], expandable_segments=True)
    assert st.peak_reserved_bytes == 2 * SMALL_BUFFER  # 2.4 MiB of small blocks: two 2 MiB pages


def test_reset_peak_restarts_from_the_current_state():
    st = replay([Event("alloc", 1, 30 * MIB), Event("free", 1), Event("reset_peak"), Event("alloc", 2, 1000)])
    assert st.peak_allocated_bytes == 1024
    assert st.peak_reserved_bytes == 30 * MIB + SMALL_BUFFER  # the cached 30 MiB segment is still held


def test_capacity_releases_cache_before_flagging_oom():
    ev = [Event("alloc", 1, 30 * MIB), Event("free", 1), Event("alloc", 2, 40 * MIB)]
    st = replay(ev, capacity_bytes=50 * MIB)
    assert not st.oom  # the cached 30 MiB segment was returned first
    assert st.reserved_bytes == 40 * MIB
    st = replay([Event("alloc", 1, 30 * MIB), Event("alloc", 2, 40 * MIB)], capacity_bytes=50 * MIB)
    assert st.oom


def test_bad_traces_are_refused():
    with pytest.raises(InvalidInputError, match="not live"):
        replay([Event("free", 7)])
    with pytest.raises(InvalidInputError, match="already live"):
        replay([Event("alloc", 1, 10), Event("alloc", 1, 10)])
    with pytest.raises(InvalidInputError, match="unknown allocator event 'malloc'"):
        replay([Event("malloc", 1, 10)])
    with pytest.raises(InvalidInputError, match="capacity_bytes"):
        CachingAllocator(capacity_bytes=0)

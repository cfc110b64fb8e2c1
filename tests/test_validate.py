"""The shared argument checks, and the command line's argparse types built on them."""

import argparse
import math

import numpy as np
import pytest

from costmodel import InvalidInputError
from costmodel._validate import (
    int_at_least,
    non_negative_number,
    positive_int,
    positive_ints,
    positive_number,
    true_or_false,
)
from costmodel.cli._args import parse_dims, positive_float, shape_arg
from costmodel.cli._args import positive_int as positive_int_arg


@pytest.mark.parametrize("bad", [0, -1, 1.0, True, "2", None])
def test_positive_int_refuses(bad):
    with pytest.raises(InvalidInputError, match=rf"^expected batch to be a positive integer, got {bad!r}$"):
        positive_int(bad, "batch")


def test_where_prefixes_and_an_empty_what_leaves_the_subject_out():
    assert positive_int(3, "batch") == 3
    with pytest.raises(InvalidInputError, match=r"^work\[0\]: expected spec 'res' to be a positive integer, got 0$"):
        positive_int(0, "spec 'res'", where="work[0]")
    with pytest.raises(InvalidInputError, match=r"^expected a positive integer, got 0$"):
        positive_int(0, "")


def test_positive_ints_names_the_bad_element_or_what_was_given():
    assert positive_ints((1, 2), "batch sizes") == [1, 2]
    with pytest.raises(InvalidInputError, match=r"^g: expected batch sizes to be positive integers, got 0$"):
        positive_ints([1, 0], "batch sizes", where="g")
    with pytest.raises(InvalidInputError, match=r"got '3,0'$"):
        positive_ints([3, 0], "dims", given="3,0")
    with pytest.raises(InvalidInputError, match=r"one or more positive integers, got \[\]$"):
        positive_ints([], "batch sizes")


def test_int_at_least_ranges_notes_and_none():
    assert int_at_least(0, "warmup", 0) == 0
    assert int_at_least(None, "max_bytes", 8, or_none=True) is None
    with pytest.raises(InvalidInputError, match=r"^expected shots to be an integer >= 4, got 3$"):
        int_at_least(3, "shots", 4)
    with pytest.raises(InvalidInputError,
                       match=r"^expected threads to be None or an integer from 1 to 2 \(the CPUs\), got 3$"):
        int_at_least(3, "threads", 1, 2, note="(the CPUs)", or_none=True)
    with pytest.raises(InvalidInputError, match="got True"):
        int_at_least(True, "threads", 1)


def test_numbers_and_flags():
    assert positive_number(np.float32(2.5), "rate") == 2.5
    assert non_negative_number(None, "flops", or_none=True) is None
    for bad in (0, -1, math.inf, math.nan, True, "1"):
        with pytest.raises(InvalidInputError, match="expected rate to be a finite number > 0"):
            positive_number(bad, "rate")
    with pytest.raises(InvalidInputError, match=r"^expected min_time_s to be a finite number of seconds >= 0"):
        non_negative_number(-1, "min_time_s", "seconds")
    with pytest.raises(InvalidInputError, match=r"^expected flops to be None or a finite number >= 0, got -1$"):
        non_negative_number(-1, "flops", or_none=True)
    with pytest.raises(InvalidInputError, match=r"^expected quick to be True or False, got 'yes'$"):
        true_or_false("yes", "quick")


def test_argparse_types_raise_argparse_errors_with_the_same_text():
    assert positive_int_arg("7") == 7 and positive_float("2.5") == 2.5
    assert shape_arg("3x224X224") == (3, 224, 224) == parse_dims(" 3 , 224 ,224")
    for fn, text, msg in [
        (positive_int_arg, "0", "expected a positive integer, got 0"),
        (positive_int_arg, "1.5", "expected a positive integer, got '1.5'"),
        (positive_float, "inf", "expected a finite number > 0, got inf"),
        (positive_float, "x", "expected a finite number > 0, got 'x'"),
        (shape_arg, "3,,224", "expected comma-separated dimensions (e.g. 3,224,224) to be positive integers, "
                              "got '3,,224'"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError) as info:
            fn(text)
        assert str(info.value) == msg
    with pytest.raises(InvalidInputError, match="got '3,0'"):
        parse_dims("3,0")

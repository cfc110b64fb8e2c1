"""The CLI's indicator for long estimates: seconds counted on a terminal's standard error, erased at the
end, nothing at all off a terminal or for a block shorter than its delay."""

import io
import time

from costmodel.cli._args import Working


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_long_block_shows_its_seconds_on_a_terminal_and_erases_them():
    out = _Tty()
    with Working("estimating x", after_s=0.05, stream=out) as w:
        time.sleep(0.3)
    text = out.getvalue()
    assert w.shown and "\restimating x... 0 s" in text
    assert text.endswith("\r\033[K")


def test_a_short_block_or_a_pipe_shows_nothing():
    out = _Tty()
    with Working("estimating x", after_s=5.0, stream=out) as w:
        pass
    assert not w.shown and out.getvalue() == ""
    pipe = io.StringIO()  # not a terminal
    with Working("estimating x", after_s=0.0, stream=pipe) as w:
        time.sleep(0.1)
    assert not w.shown and pipe.getvalue() == ""
    forced_off = _Tty()
    with Working("estimating x", after_s=0.0, stream=forced_off, enabled=False):
        time.sleep(0.1)
    assert forced_off.getvalue() == ""

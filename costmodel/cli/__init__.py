"""The ``costmodel`` command line (also ``python -m costmodel``).

Every failure ends in exactly one ``costmodel: error: ...`` line on stderr and
exit code 2: bad arguments (argparse's own errors included, without the usage
block), bad input (:class:`~costmodel.CostModelError`), unreadable or
unwritable user paths (``OSError``, naming the path), and unexpected failures
(``costmodel: error: internal error: ...``).  Warnings raised while a command
runs are printed once it succeeds and dropped when it fails, so the error line
stands alone.  Nothing prints a traceback unless ``COSTMODEL_DEBUG=1``.
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]

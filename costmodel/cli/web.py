"""``costmodel web``: serve the transformer cost web page."""

from __future__ import annotations

import argparse

from ._args import positive_int


def register_web(sub) -> None:
    w = sub.add_parser("web", help="serve the transformer cost web page (needs the 'web' extra)",
                       description="Serve a page where a model name or config.json, batch, sequence, device, dtype "
                                   "and mode give throughput, memory (against the device and its MIG slices), "
                                   "energy, carbon and cost, with a batch-size sweep.",
                       epilog="examples:\n  costmodel web\n  costmodel web --host 0.0.0.0 --port 8080\n",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    w.add_argument("--port", type=positive_int, default=7860, help="port (default 7860)")
    w.set_defaults(func=_cmd_web)


def _cmd_web(a) -> int:
    from ..integrations.web import launch

    launch(a.host, a.port)
    return 0



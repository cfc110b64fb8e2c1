"""``costmodel web``: serve the transformer cost web page."""

from __future__ import annotations

from ._args import add_command, positive_int

WEB_EXAMPLES = """examples:
  costmodel web
  costmodel web --host 0.0.0.0 --port 8080
"""


def register_web(sub) -> None:
    w = add_command(sub, "web", _cmd_web, help="serve the transformer cost web page (needs the 'web' extra)",
                    description="Serve a page where a model name or config.json, batch, sequence, device, dtype "
                                "and mode give throughput, memory (against the device and its MIG slices), "
                                "energy, carbon and cost, with a batch-size sweep.",
                    epilog=WEB_EXAMPLES)
    w.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    w.add_argument("--port", type=positive_int, default=7860, help="port (default 7860)")


def _cmd_web(a) -> int:
    from ..integrations.web import launch

    launch(a.host, a.port)
    return 0



"""TVM Relax integration (planned): a module pass that annotates an IRModule
with costmodel estimates during ``tvm.relax.build``.

Relay was removed from TVM in 0.20, so the integration targets Relax.  Nothing
is exported yet; importing this package does not import TVM.
"""

__all__: list[str] = []

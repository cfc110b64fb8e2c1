"""Cost estimates inside other tools: the ``torch.compile`` backend (:mod:`.torch_compile`), the ONNX
metadata hook (:mod:`.onnx_hook`, public as :mod:`costmodel.onnx`), the TVM Relax pass (:mod:`.relax_pass`,
public as :mod:`tvm_passes`) and the transformer cost web page (:mod:`.web`).

Importing this package imports none of them (nor torch, onnx, tvm or gradio).
"""

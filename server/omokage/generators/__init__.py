"""Generators: latent vector → face image, behind one interface with several backends.

    from omokage.generators import make_decoder, available_backends
    decoder = make_decoder("onnxruntime", "models/")        # the newest models/gen/VERSION
    images = decoder.decode(z)                             # (B, 30) float32 → (B, S, S, 3) float32 in [0, 1]

Backends: `numpy` (PCA-30's linear decode: the baseline, and the fallback when no `gen` model is fitted),
`onnxruntime` (the `gen` decoder's decoder.onnx on the CPU), `tensorrt` (an engine built from the same file, its plan
cached in the model's version folder) and `torch-cuda` (the same weights in PyTorch on a CUDA GPU, for measurements).
See docs/generators.md.
"""

from omokage.generators.backends import (BACKENDS, DecoderBackend, NumpyBackend, OnnxRuntimeBackend,
                                         TensorRTBackend, TorchCudaBackend, available_backends, make_decoder)

__all__ = ["BACKENDS", "DecoderBackend", "NumpyBackend", "OnnxRuntimeBackend", "TensorRTBackend", "TorchCudaBackend",
           "available_backends", "make_decoder"]

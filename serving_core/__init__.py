"""Shared core of the ERNIE serving compiler.

Everything here is used by more than one room: the builder (compile time), the Python
backends inside Triton (`model_repository/`) and the clients. It depends on numpy and,
lazily, on `tokenizers`, `paddle` or `onnxruntime`; never on Triton's server-side utils.
"""

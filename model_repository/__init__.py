"""Python backend code that runs inside Triton.

The builder copies `<step>/model.py`, `triton_helpers.py` and the `serving_core` package
into each generated model's version directory, so a repository is self-contained.
"""

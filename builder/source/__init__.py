"""What the user hands the builder: detecting the model directory (detect.py), MindSpore
students (mindspore.py), the checkpoint export (export.py) and the source model run as the
reference for the engines and for `verify` (reference.py)."""

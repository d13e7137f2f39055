"""The engines a model step runs: each proven against the source model before a build writes
anything (proof.py), the fastest correct one chosen by `--runtime auto` (choice.py), and INT8
quantization with its calibration check (quantize.py)."""

"""The Triton target: configs rendered through model_config.proto (config.py), the ensemble's
wiring check, the repository plan and its atomic writer with the file record, and `builder check`."""

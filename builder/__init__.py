"""Compile time: turn a finetuned ERNIE model into a Triton model repository."""

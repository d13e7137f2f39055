"""Offline example models: generated vocabulary, small data set, seconds of training."""

"""gRPC clients for the generated Triton ensembles (library and `python -m clients.<task>`)."""

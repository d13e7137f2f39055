"""The Paddle Serving target: the pipeline service writer (service.py), its prototxt through
Paddle Serving's own proto (prototxt.py), and the process that runs it (server.py)."""

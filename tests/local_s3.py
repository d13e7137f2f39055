"""A local S3 server (moto's, from PyPI) for the object-storage tests, with the AWS variables
Triton and boto3 read set while it runs. Moto keeps its buckets in the test process, shared by
every server it starts: each use gets a bucket of its own."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def local_s3():
    """Yields the `s3://host:port/<bucket>` prefix of a fresh local server and a new bucket."""
    import secrets

    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    try:
        host, port = server.get_host_and_port()
        bucket = f"models-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket=bucket)
        yield f"s3://{host}:{port}/{bucket}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

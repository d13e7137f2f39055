"""Repositories in object storage, named as Triton names them: s3://[host:port/]bucket/path.

Triton reads such a repository itself; what the builder needs from it is each ensemble's
build.json (for `verify`). Credentials, region and endpoint come from the usual AWS variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL), and a
host:port in the URL is the endpoint, as in Triton.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from serving_core.errors import UserError

from builder.triton.repository import MANIFEST, PUBLISH_RECORD


@dataclass(frozen=True)
class S3Location:
    endpoint_url: str | None  # None: AWS_ENDPOINT_URL or AWS itself
    bucket: str
    prefix: str  # without a trailing slash; "" for the bucket's root

    @classmethod
    def parse(cls, url: str) -> "S3Location":
        if not url.startswith("s3://"):
            raise UserError("not an s3:// URL", url)
        parts = [p for p in url[len("s3://"):].split("/") if p]
        endpoint = None
        if parts and ":" in parts[0]:  # s3://host:port/bucket/path, Triton's form for a custom endpoint
            endpoint = f"{os.environ.get('ERNIE_SERVING_S3_SCHEME', 'http')}://{parts.pop(0)}"
        if not parts:
            raise UserError("names no bucket: use s3://[host:port/]bucket/path", url)
        return cls(endpoint, parts[0], "/".join(parts[1:]))

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))


def _objects(url: str):
    """(client, bucket, key, path relative to the repository) of every object under `url`."""
    location = S3Location.parse(url)
    prefix = f"{location.prefix}/" if location.prefix else ""
    client = location.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield client, location.bucket, item["Key"], item["Key"][len(prefix):]


def download_build_records(url: str, target: Path) -> Path:
    """Copy every ensemble's build.json under `url` into `target/<ensemble>/build.json`, and
    every published name's record (`builder publish`) beside it."""
    found = 0
    for client, bucket, key, relative in _objects(url):
        parts = relative.split("/")
        if len(parts) == 2 and parts[1] in (MANIFEST, PUBLISH_RECORD):
            (target / parts[0]).mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(target / parts[0] / parts[1]))
            found += parts[1] == MANIFEST
    if not found:
        raise UserError(f"holds no */{MANIFEST}: was it uploaded from a `builder build` output?", url)
    return target


def download_repository(url: str, target: Path) -> Path:
    """Copy every object under `url` into `target` (paths kept), as Triton will read them."""
    found = 0
    for client, bucket, key, relative in _objects(url):
        if not relative or relative.endswith("/") or ".." in relative.split("/"):
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target / relative))
        found += 1
    if not found:
        raise UserError("holds no files: is this the repository's URL?", url)
    return target


def upload_repository(directory: Path, url: str) -> int:
    """Upload a local repository file by file, as `aws s3 cp --recursive` does; returns the count."""
    location = S3Location.parse(url)
    client = location.client()
    count = 0
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            key = "/".join(filter(None, [location.prefix, path.relative_to(directory).as_posix()]))
            client.upload_file(str(path), location.bucket, key)
            count += 1
    return count


def upload_file(path: Path, url: str, relative: str) -> None:
    """Upload one file to `url`/`relative` (e.g. a build.json rewritten by `builder check --accept`)."""
    location = S3Location.parse(url)
    location.client().upload_file(str(path), location.bucket, "/".join(filter(None, [location.prefix, relative])))

"""Where a live server's repository is: a directory, or an object store Triton reads (s3://).

`builder publish` changes a repository only through these operations, so a publish works the
same on both: list the model directories, read and write a file, add whole models, copy one
model's files under another, delete a model, and hold the repository's publish lock.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from serving_core.errors import UserError

from builder.staging import swap_in

LOCK = ".publish.lock"


def open_store(repository: str | Path) -> "LocalStore | S3Store":
    text = str(repository)
    if text.startswith("s3://"):
        return S3Store(text)
    if text.startswith(("gs://", "as://")):
        raise UserError("publishing to this object store is not supported (s3:// and directories are)", text)
    return LocalStore(Path(repository))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _busy(holder: str, display: str) -> UserError:
    return UserError(f"another publish or rollback is running on this repository ({holder or 'another process'}); "
                     "wait for it, or pass --lock-wait SECONDS", display)


class LocalStore:
    """A repository directory."""

    def __init__(self, root: Path):
        if not Path(root).is_dir():
            raise UserError("no such repository directory (the live server's model repository)", str(root))
        self.root = Path(root)
        self.display = str(root)

    def model_names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def read_text(self, relative: str) -> str | None:
        path = self.root / relative
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def write_text(self, relative: str, text: str) -> None:
        """Replaces the file at once (a reader sees the old or the new text)."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)

    def add_models(self, staging: Path, models: list[str]) -> None:
        """Move finished model directories in, all of them or none."""
        swap_in(staging, self.root, {m: m for m in models})

    def copy_tree(self, source: str, target: str) -> None:
        """`target` as a copy of `source` (hard links where the file system allows)."""
        destination = self.root / target
        staging = destination.with_name(f".{destination.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)

        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(self.root / source, staging, copy_function=link,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)

    def remove_tree(self, relative: str) -> None:
        shutil.rmtree(self.root / relative, ignore_errors=True)

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def staging_parent(self) -> Path:
        return self.root.parent

    @contextlib.contextmanager
    def lock(self, wait_s: float):
        """The kernel's lock (flock) on REPOSITORY/.publish.lock: it goes with a killed holder's process."""
        with open(self.root / LOCK, "a+", encoding="utf-8") as handle:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        raise _busy(handle.read().strip(), self.display) from None
                    time.sleep(0.2)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {_now()}\n")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check(self):
        from builder.triton.check import check_repository

        return check_repository(self.root)


class S3Store:
    """A repository in S3 (s3://[host:port/]bucket/path, the AWS_* variables), as Triton reads it.
    An object store has no rename: models are uploaded file by file, each version ensemble's
    build.json last, and a version no publish record keeps (an upload cut short) is deleted by
    the next publish. The lock is an object written only if absent (a conditional PUT); a lock
    left by a killed publisher on this host, or older than `lease_s`, is taken over."""

    def __init__(self, url: str, lease_s: float = 3600.0):
        from builder.serving.object_store import S3Location

        self.location = S3Location.parse(url)
        self.client = self.location.client()
        self.display = url
        self.lease_s = lease_s

    def _key(self, relative: str) -> str:
        return "/".join(filter(None, [self.location.prefix, relative]))

    def _keys(self, relative: str) -> list[str]:
        prefix = self._key(relative).rstrip("/") + "/"
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.location.bucket,
                                                                          Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def model_names(self) -> list[str]:
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        names = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.location.bucket,
                                                                          Prefix=prefix, Delimiter="/"):
            names |= {item["Prefix"][len(prefix):].rstrip("/") for item in page.get("CommonPrefixes", [])}
        return sorted(n for n in names if n and not n.startswith("."))

    def read_text(self, relative: str) -> str | None:
        try:
            body = self.client.get_object(Bucket=self.location.bucket, Key=self._key(relative))["Body"]
        except self.client.exceptions.NoSuchKey:
            return None
        return body.read().decode("utf-8")

    def write_text(self, relative: str, text: str) -> None:
        self.client.put_object(Bucket=self.location.bucket, Key=self._key(relative), Body=text.encode("utf-8"))

    def add_models(self, staging: Path, models: list[str]) -> None:
        from builder.triton.repository import MANIFEST

        files = [p for m in models for p in sorted((staging / m).rglob("*")) if p.is_file()]
        files.sort(key=lambda p: p.name == MANIFEST)  # the records last: a version is complete when they are there
        for path in files:
            self.client.upload_file(str(path), self.location.bucket, self._key(path.relative_to(staging).as_posix()))

    def copy_tree(self, source: str, target: str) -> None:
        self.remove_tree(target)
        source_prefix = self._key(source).rstrip("/") + "/"
        for key in self._keys(source):
            self.client.copy_object(Bucket=self.location.bucket, Key=self._key(target) + "/" + key[len(source_prefix):],
                                    CopySource={"Bucket": self.location.bucket, "Key": key})

    def remove_tree(self, relative: str) -> None:
        keys = self._keys(relative)
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.location.bucket,
                                       Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})

    def exists(self, relative: str) -> bool:
        return bool(self._keys(relative))

    def staging_parent(self) -> Path | None:
        return None

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder.get("pid", 0)), 0)
            except ProcessLookupError:
                return True
            except (OSError, ValueError):
                return False
            return False
        return time.time() - float(holder.get("since_epoch", 0)) > self.lease_s

    @contextlib.contextmanager
    def lock(self, wait_s: float):
        key = self._key(LOCK)
        mine = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now(), "since_epoch": time.time()}
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.client.put_object(Bucket=self.location.bucket, Key=key, Body=json.dumps(mine).encode(),
                                       IfNoneMatch="*")
                break
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                    raise
            text = self.read_text(LOCK)
            holder = json.loads(text) if text else {}
            if text and self._stale(holder):
                self.client.delete_object(Bucket=self.location.bucket, Key=key)
                continue
            if time.monotonic() >= deadline:
                raise _busy(f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}",
                            self.display)
            time.sleep(0.5)
        try:
            yield
        finally:
            self.client.delete_object(Bucket=self.location.bucket, Key=key)

    def check(self):
        from builder.triton.check import check_location

        return check_location(self.display)

"""The Store interface on a Hugging Face Hub repo (`hf://org/repo[@revision]`).

Keys are file paths in the repo. Writes are commits that carry `parent_commit`: a commit
computed on a stale head fails and is retried after re-checking the key, which is the
Hub's form of compare-and-swap. Etags are sha256 of content, so a commit that touches
other files (another publisher's blob) does not invalidate an index read.

No Hub is reachable from this project's machines: reads are tested against a local
mirror when one is available; commits against a real Hub are NOT exercised (see
registry/README.md). Model-repo folders (card + weights) are zoo/index/hub.py's job.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo.errors import (
    BlobNotFoundError,
    ChecksumMismatchError,
    StoreAuthError,
    StoreConflictError,
    StoreError,
    StoreUnreachableError,
)
from zoo.fsutil import sha256_file
from zoo.storage.base import (
    CHUNK,
    Store,
    Versioned,
    blob_key,
    check_key,
    sha256_bytes,
    store_timeout,
)

MAX_COMMIT_ATTEMPTS = 20


# -- the Store interface on a Hub repo -----------------------------------------------


def bound_hub_client(timeout: float) -> None:
    """Give huggingface_hub's shared HTTP client a timeout of `timeout` seconds.

    Its default client waits forever, and two HfApi calls a store makes (`create_commit`,
    `get_paths_info`) take no timeout argument, so a silent endpoint would hang a publish.
    A client factory the user installed is left alone.
    """
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    current = _http._GLOBAL_CLIENT_FACTORY
    if current is not _http.default_client_factory and getattr(current, "zoo_timeout", None) in (
        None,
        timeout,
    ):
        return  # the user's own factory, or ours with this timeout already

    def bound(request: Any) -> None:
        # huggingface_hub passes `timeout=None` per request (pagination does), which overrides
        # any client default, so the bound goes on each request as it leaves.
        limits = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            phase: limits.get(phase) or timeout for phase in ("connect", "read", "write", "pool")
        }

    def factory() -> Any:
        client = _http.default_client_factory()
        client.event_hooks["request"].append(bound)
        return client

    factory.zoo_timeout = timeout  # type: ignore[attr-defined]
    set_client_factory(factory)


class HfStore(Store):
    """Keys are paths in the repo; `etag`s are sha256 of content; commits carry the
    parent commit they were computed on, so a concurrent commit makes ours fail."""

    def __init__(
        self,
        repo_id: str,
        revision: str = "main",
        *,
        endpoint: str | None = None,
        token: str | None = None,
    ) -> None:
        self.repo_id = repo_id
        self.revision = revision
        self.endpoint = endpoint
        self.token = token
        self.url = f"hf://{repo_id}" + (f"@{revision}" if revision != "main" else "")
        self._api: Any = None

    @classmethod
    def from_url(cls, url: str) -> HfStore:
        body = url[len("hf://") :]
        repo, _, revision = body.partition("@")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise StoreError(f"invalid Hub URL {url!r}: expected hf://org/repo[@revision]")
        return cls(repo, revision or "main")

    @property
    def identity(self) -> str:
        from huggingface_hub import constants

        return f"{self.url}@{(self.endpoint or constants.ENDPOINT).rstrip('/')}"

    @property
    def api(self) -> Any:
        bound_hub_client(store_timeout())
        if self._api is None:
            from huggingface_hub import HfApi

            self._api = HfApi(endpoint=self.endpoint, token=self.token)
        return self._api

    def _error(self, exc: Exception, what: str) -> StoreError:
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

        if isinstance(exc, GatedRepoError | RepositoryNotFoundError):
            return StoreAuthError(
                f"Hub repo {self.repo_id} not found or not accessible while {what}; check "
                "the name and HF_TOKEN"
            )
        if isinstance(exc, HfHubHTTPError):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                return StoreAuthError(f"the Hub refused our token for {self.url} while {what}")
            return StoreError(f"Hub error for {self.url} while {what}: {exc}")
        name = type(exc).__name__.lower()
        if isinstance(exc, OSError | ConnectionError) or "connect" in name or "timeout" in name:
            return StoreUnreachableError(
                f"cannot reach the Hub endpoint for {self.url} while {what}: {exc}; "
                "check HF_ENDPOINT and the network (HF_HUB_OFFLINE=1 disables it)"
            )
        return StoreError(f"Hub error for {self.url} while {what}: {exc}")

    def _head(self) -> str:
        try:
            info = self.api.repo_info(self.repo_id, revision=self.revision, timeout=store_timeout())
            return str(info.sha)
        except Exception as exc:
            raise self._error(exc, "reading the head commit") from exc

    def _download(self, key: str, commit: str) -> bytes | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = hf_hub_download(
                self.repo_id,
                check_key(key),
                revision=commit,
                endpoint=self.endpoint,
                token=self.token,
                etag_timeout=store_timeout(),
            )
        except EntryNotFoundError:
            return None
        except Exception as exc:
            raise self._error(exc, f"downloading {key}") from exc
        return Path(path).read_bytes()

    def _commit(self, operations: list[Any], parent: str, message: str) -> None:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=message,
                revision=self.revision,
                parent_commit=parent,
            )
        except HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (409, 412):
                raise StoreConflictError(f"{self.url} moved during the commit") from None
            raise self._error(exc, message) from exc
        except Exception as exc:  # a timeout or refused connection: unreachable, not a crash
            raise self._error(exc, message) from exc

    def _put(self, key: str, payload: Any, expect: str | None, must_be_absent: bool) -> str:
        """Commit `payload` at `key` if the key is absent / has etag `expect`."""
        from huggingface_hub import CommitOperationAdd

        for _ in range(MAX_COMMIT_ATTEMPTS):
            head = self._head()
            current = self._download(key, head)
            current_etag = None if current is None else sha256_bytes(current)
            if must_be_absent and current is not None:
                raise FileExistsError(key)
            if not must_be_absent and current_etag != expect:
                raise StoreConflictError(f"{self.url}/{key} changed since it was read")
            try:
                self._commit([CommitOperationAdd(key, payload)], head, f"zoo: write {key}")
            except StoreConflictError:
                continue  # another commit landed first: re-check against the new head
            data = payload if isinstance(payload, bytes) else Path(payload).read_bytes()
            return sha256_bytes(data)
        raise StoreConflictError(f"{self.url}: too many concurrent commits writing {key}")

    # -- Store ---------------------------------------------------------------------------

    def put_blob(self, sha256: str, source: str | os.PathLike[str]) -> bool:
        actual = sha256_file(source)
        if actual != sha256:
            raise ChecksumMismatchError(str(source), sha256, actual, "upload")
        if self.has_blob(sha256):  # cheap check first: _put would download the blob
            return False
        try:
            self._put(blob_key(sha256), str(source), None, must_be_absent=True)
        except FileExistsError:
            return False
        return True

    def replace_blob(self, sha256: str, source: str | os.PathLike[str]) -> None:
        from huggingface_hub import CommitOperationAdd

        actual = sha256_file(source)
        if actual != sha256:
            raise ChecksumMismatchError(str(source), sha256, actual, "upload")
        key = blob_key(sha256)
        for _ in range(MAX_COMMIT_ATTEMPTS):
            try:
                self._commit(
                    [CommitOperationAdd(key, str(source))], self._head(), f"zoo: repair {key}"
                )
            except StoreConflictError:
                continue
            return
        raise StoreConflictError(f"{self.url}: too many concurrent commits repairing {key}")

    def blob_size(self, sha256: str) -> int:
        try:
            infos = self.api.get_paths_info(
                self.repo_id, [blob_key(sha256)], revision=self.revision
            )
        except Exception as exc:
            raise self._error(exc, f"checking blob {sha256}") from exc
        if not infos:
            raise BlobNotFoundError(f"blob {sha256} not found in store {self.url}")
        return int(infos[0].size)

    def iter_blob(
        self, sha256: str, start: int = 0, end: int | None = None, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session

        if end is not None and end <= start:
            return iter(())
        url = hf_hub_url(
            self.repo_id, blob_key(sha256), revision=self.revision, endpoint=self.endpoint
        )
        headers = build_hf_headers(token=self.token)
        headers["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        session = get_session()
        try:
            response = session.get(
                url, headers=headers, follow_redirects=True, timeout=store_timeout()
            )
        except Exception as exc:
            raise self._error(exc, f"downloading blob {sha256}") from exc
        if response.status_code == 404:
            raise BlobNotFoundError(f"blob {sha256} not found in store {self.url}")
        if response.status_code == 416:
            return iter(())
        if response.status_code not in (200, 206):
            raise StoreError(f"Hub returned HTTP {response.status_code} for {url}")
        body = response.content
        if response.status_code == 200:  # server ignored the range: cut it ourselves
            body = body[start : None if end is None else end]
        return (body[i : i + chunk_size] for i in range(0, len(body), chunk_size))

    def get(self, key: str) -> Versioned | None:
        data = self._download(key, self._head())
        return None if data is None else Versioned(data, sha256_bytes(data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self._put(key, data, None, must_be_absent=True)
        except FileExistsError:
            return False
        return True

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> str:
        if etag is None:
            try:
                return self._put(key, data, None, must_be_absent=True)
            except FileExistsError:
                raise StoreConflictError(f"{self.url}/{key} already exists") from None
        return self._put(key, data, etag, must_be_absent=False)

    def list(self, prefix: str = "") -> Iterator[str]:
        try:
            # repo_info lists every file and, unlike list_repo_files, takes a timeout and
            # does not retry a silent endpoint five times.
            info = self.api.repo_info(self.repo_id, revision=self.revision, timeout=store_timeout())
            files = [sibling.rfilename for sibling in info.siblings or ()]
        except Exception as exc:
            raise self._error(exc, "listing files") from exc
        return (f for f in files if f.startswith(prefix) and not f.startswith("."))

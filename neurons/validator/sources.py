"""Where committed model files come from: the miner that committed them, or a pinned Hugging Face
repo. One protocol (:class:`Source`: ``plan`` the files, then ``download`` them into a folder),
one adapter per kind; the fetcher (``fetch.py``) checks what they bring against the committed
digest, so a source is trusted for nothing but bytes.

Every failure is a :class:`FetchError` with a short ``reason`` code (a metric label and the
cause detail a miner sees) and a one-line message; ``retry=False`` when asking again cannot
help soon (the file is not there, the source refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from distill.identity import IdentityError, ModelSource
from distill.manifest import MAX_MANIFEST_BYTES, covered_path, parse_manifest
from subnet import auth, protocol
from subnet.errors import ProtocolError

_CHUNK = 1 << 20


class FetchError(Exception):
    """A source could not deliver; ``reason`` is a short code, the message one line."""

    def __init__(self, reason: str, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry = retry


@dataclass(frozen=True)
class FetchTarget:
    """One committed model to fetch: its digest, its source, and the miner that committed it
    (whose endpoint serves the files when the source is ``miner``)."""

    digest: str
    source: ModelSource
    hotkey: str = ""
    url: str = ""  # the miner's http://host:port
    uid: int | None = None


@dataclass(frozen=True)
class PlannedFile:
    path: str  # relative, covered by the model digest
    size: int
    sha256: str | None  # known for the miner's files (content address); None from the hub


class Source(Protocol):
    kind: str

    async def plan(self, target: FetchTarget) -> list[PlannedFile]:
        """The files to fetch (FetchError if the source cannot say)."""
        ...

    async def download(self, target: FetchTarget, files: Sequence[PlannedFile], dest: Path) -> None:
        """Put every planned file under ``dest`` (resuming what is already there)."""
        ...


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class MinerSource:
    """The miner's own endpoint: ``GET /v1/model/manifest`` (signed by the miner) and
    ``GET /v1/model/files/<sha256>`` with HTTP range requests, each signed with btauth/1."""

    kind = "miner"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        wallet: Any,
        *,
        stall_timeout: float = 60.0,
        max_total_bytes: int | None = None,
    ) -> None:
        self.session = session
        self.wallet = wallet
        self.stall_timeout = stall_timeout
        self.max_total_bytes = max_total_bytes

    def _headers(self, path: str, target: FetchTarget) -> dict[str, str]:
        try:
            return auth.sign_request(self.wallet, "GET", path, b"", target.hotkey)
        except Exception as e:  # a malformed hotkey on chain
            raise FetchError("bad_hotkey", f"cannot sign for {target.hotkey!r}: {e}") from None

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.stall_timeout, sock_read=self.stall_timeout
        )

    @staticmethod
    def _refusal(status: int, what: str) -> FetchError:
        if status in (401, 403):
            return FetchError("refused", f"{what}: the miner refused (HTTP {status})", retry=False)
        if status == 404:
            return FetchError("not_served", f"{what}: the miner does not serve it (HTTP 404)")
        if status == 429:
            return FetchError("rate_limited", f"{what}: rate limited by the miner (HTTP 429)")
        return FetchError("http_error", f"{what}: HTTP {status}")

    async def plan(self, target: FetchTarget) -> list[PlannedFile]:
        path = protocol.MODEL_MANIFEST_PATH
        if not target.url:
            raise FetchError("no_endpoint", "the miner serves no endpoint on chain")
        try:
            async with self.session.get(
                target.url + path, headers=self._headers(path, target), timeout=self._timeout()
            ) as resp:
                body = await resp.content.read(MAX_MANIFEST_BYTES + 1)
                if resp.status != 200:
                    raise self._refusal(resp.status, "manifest")
                headers = dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise FetchError("unreachable", f"manifest: {type(e).__name__}: {e}") from None
        try:
            auth.verify_response(
                headers, body, miner_hotkey=target.hotkey, status=200, path=path, request_body=b""
            )
        except ProtocolError as e:
            raise FetchError("bad_signature", f"manifest: {e}") from None
        try:
            manifest = parse_manifest(body, max_total_bytes=self.max_total_bytes)
        except IdentityError as e:
            reason = "too_large" if "allowed" in str(e) else "bad_manifest"
            raise FetchError(reason, f"manifest: {e}") from None
        if manifest.digest != target.digest:
            raise FetchError(
                "digest_mismatch",
                f"the miner serves {manifest.digest[:12]}, it committed {target.digest[:12]}",
            )
        return [PlannedFile(f.path, f.size, f.sha256) for f in manifest.files]

    async def download(self, target: FetchTarget, files: Sequence[PlannedFile], dest: Path) -> None:
        for f in files:
            await self._file(target, f, dest)

    async def _file(self, target: FetchTarget, f: PlannedFile, dest: Path) -> None:
        final = dest / f.path
        if f.sha256 is None:
            raise FetchError("bad_manifest", f"{f.path}: no sha256 to fetch it by")
        done = final.is_file() and final.stat().st_size == f.size
        if done and await asyncio.to_thread(_sha256, final) == f.sha256:
            return  # finished before a restart
        part = final.with_name(final.name + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        if have > f.size:
            part.unlink()
            have = 0
        path = protocol.MODEL_FILE_PATH.format(sha256=f.sha256)
        headers = self._headers(path, target)
        if have > 0:
            headers["Range"] = f"bytes={have}-"
        try:
            async with self.session.get(
                target.url + path, headers=headers, timeout=self._timeout()
            ) as resp:
                if resp.status == 416 and have == f.size:
                    pass  # the part is complete: nothing left to send
                elif resp.status not in (200, 206):
                    raise self._refusal(resp.status, f.path)
                else:
                    start = _range_start(resp) if resp.status == 206 else 0
                    if start != (have if resp.status == 206 else 0):
                        raise FetchError("bad_range", f"{f.path}: asked from {have}, got {start}")
                    await self._write(resp, part, start, f)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            # The bytes so far stay in the .part file: the next attempt asks for the rest.
            raise FetchError("unreachable", f"{f.path}: {type(e).__name__}: {e}") from None
        if part.stat().st_size != f.size:  # the whole answer arrived: the file itself differs
            got = part.stat().st_size
            part.unlink()
            raise FetchError("digest_mismatch", f"{f.path} is {got} bytes, not the {f.size} listed")
        if await asyncio.to_thread(_sha256, part) != f.sha256:
            part.unlink()
            raise FetchError("digest_mismatch", f"{f.path} does not match its sha256")
        part.replace(final)

    @staticmethod
    async def _write(resp: aiohttp.ClientResponse, part: Path, start: int, f: PlannedFile) -> None:
        with part.open("r+b" if start and part.exists() else "wb") as fh:
            fh.seek(start)
            fh.truncate()
            written = start
            async for chunk in resp.content.iter_chunked(_CHUNK):
                written += len(chunk)
                if written > f.size:
                    raise FetchError("bad_file", f"{f.path}: more bytes than the manifest says")
                fh.write(chunk)


def _range_start(resp: aiohttp.ClientResponse) -> int:
    """The first byte of a 206 answer (``Content-Range: bytes START-END/TOTAL``)."""
    value = resp.headers.get("Content-Range", "")
    try:
        unit, _, rest = value.partition(" ")
        if unit != "bytes":
            raise ValueError(value)
        return int(rest.split("-", 1)[0])
    except ValueError:
        raise FetchError("bad_range", f"unreadable Content-Range {value[:60]!r}") from None


class HfSource:
    """A Hugging Face repo at a pinned commit, through ``huggingface_hub``: the tree listing
    (``/api/models/<repo>/tree/<commit>``), then each covered file (``HEAD``/``GET
    /<repo>/resolve/<commit>/<file>``, resumed by the library after a broken transfer).

    ``endpoint`` "" is the library's default (``HF_ENDPOINT`` or huggingface.co). No token is
    sent: committed models are public. The library is synchronous: it runs in a thread.
    """

    kind = "hf"

    def __init__(self, endpoint: str = "", *, timeout: float = 60.0) -> None:
        self.endpoint = endpoint or None
        self.timeout = timeout

    async def plan(self, target: FetchTarget) -> list[PlannedFile]:
        return await asyncio.to_thread(self._plan, target)

    def _plan(self, target: FetchTarget) -> list[PlannedFile]:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        src = target.source
        with _hub_errors(f"{src.repo}@{src.revision[:12]}"):
            tree = HfApi(endpoint=self.endpoint, token=False).list_repo_tree(
                src.repo, revision=src.revision, recursive=True
            )
            files = [
                PlannedFile(f.path, int(f.size), f.lfs.sha256 if f.lfs else None)
                for f in tree
                if isinstance(f, RepoFile) and covered_path(f.path)
            ]
        if not files:
            raise FetchError("not_found", f"{src.repo}@{src.revision[:12]}: no model files")
        return files

    async def download(self, target: FetchTarget, files: Sequence[PlannedFile], dest: Path) -> None:
        await asyncio.to_thread(self._download, target, files, dest)

    def _download(self, target: FetchTarget, files: Sequence[PlannedFile], dest: Path) -> None:
        from huggingface_hub import hf_hub_download

        src = target.source
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            with _hub_errors(f"{src.repo}/{f.path}"):
                hf_hub_download(
                    src.repo,
                    f.path,
                    revision=src.revision,
                    local_dir=dest,
                    endpoint=self.endpoint,
                    token=False,
                    etag_timeout=self.timeout,
                )
        shutil.rmtree(dest / ".cache", ignore_errors=True)  # the library's own bookkeeping


@contextlib.contextmanager
def _hub_errors(what: str) -> Iterator[None]:
    """Translate huggingface_hub's exceptions into FetchError (one line, a reason code)."""
    from huggingface_hub import errors

    try:
        yield
    except FetchError:
        raise
    except errors.OfflineModeIsEnabled:
        raise FetchError("offline", f"{what}: the hub is off (HF_HUB_OFFLINE)") from None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as e:
        raise FetchError("not_found", f"{what}: {type(e).__name__}", retry=False) from None
    except errors.LocalEntryNotFoundError as e:  # what the library raises offline, too
        reason = "offline" if "HF_HUB_OFFLINE" in str(e) else "unreachable"
        raise FetchError(reason, f"{what}: {str(e).splitlines()[0][:160]}") from None
    except errors.EntryNotFoundError:
        raise FetchError("not_found", f"{what}: no such file", retry=False) from None
    except Exception as e:  # the hub's HTTP errors, connection errors: retried later
        first = (str(e).splitlines() or [""])[0][:160]
        raise FetchError("unreachable", f"{what}: {type(e).__name__}: {first}") from None

"""Teacher targets on disk: sharded, memory-mapped ``.npy`` arrays plus one JSON manifest.

Layout of a targets directory::

    manifest.json            what made the targets (teacher, K, tokenizer hash, prompts,
                             sampling) and, per finished shard, its counts and file sizes/sha256
    shard-00000/tokens.npy        int32 [T]      prompt + completion ids, sequences concatenated
    shard-00000/seq_offsets.npy   int64 [n + 1]  sequence i is tokens[off[i]:off[i + 1]]
    shard-00000/prompt_lens.npy   int32 [n]      the first prompt_lens[i] ids are the prompt
    shard-00000/top_ids.npy       int32 [P, K]   teacher top-K ids, one row per completion token
    shard-00000/top_logprobs.npy  float32 [P, K] their raw logprobs, sorted descending

Rows of ``top_*`` follow the completions in order, so sequence i owns rows
``cumsum(len_i - prompt_len_i)``. A shard is written to a temporary directory and renamed, then
recorded in the manifest (also replaced atomically): a shard not in the manifest is garbage
from an interrupted run and is rebuilt; one in the manifest but shorter than recorded is
corruption and fails loudly (``TargetsError``) before any training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from subnet.errors import ConfigError

FORMAT = "distill-targets/v1"
MANIFEST = "manifest.json"
ARRAYS = ("tokens", "seq_offsets", "prompt_lens", "top_ids", "top_logprobs")


class TargetsError(ConfigError, ValueError):
    """Targets, prompts or a student that cannot be used as asked; the message says why.

    A ConfigError, so the CLI prints it as one line: the operator fixes a file or an argument.
    """


@dataclass(frozen=True)
class Example:
    """One teacher sequence: ids, where the completion starts, its top-K targets."""

    tokens: npt.NDArray[np.int32]  # [L] prompt + completion
    prompt_len: int
    top_ids: npt.NDArray[np.int32]  # [L - prompt_len, K]
    top_logprobs: npt.NDArray[np.float32]  # [L - prompt_len, K]


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_shard(root: Path, index: int, examples: Sequence[Example]) -> dict[str, Any]:
    """Write one shard atomically; return its manifest entry (counts, sizes, checksums)."""
    if not examples:
        raise TargetsError("a shard needs at least one example")
    k = examples[0].top_ids.shape[1]
    lens = [len(e.tokens) for e in examples]
    arrays: dict[str, np.ndarray] = {
        "tokens": np.concatenate([e.tokens for e in examples]).astype(np.int32),
        "seq_offsets": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        "prompt_lens": np.array([e.prompt_len for e in examples], dtype=np.int32),
        "top_ids": np.concatenate([e.top_ids for e in examples]).astype(np.int32).reshape(-1, k),
        "top_logprobs": np.concatenate([e.top_logprobs for e in examples])
        .astype(np.float32)
        .reshape(-1, k),
    }
    final = root / shard_name(index)
    tmp = root / f".{shard_name(index)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
    files = {
        name: {
            "bytes": (tmp / f"{name}.npy").stat().st_size,
            "sha256": file_sha256(tmp / f"{name}.npy"),
        }
        for name in ARRAYS
    }
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return {
        "index": index,
        "sequences": len(examples),
        "positions": int(arrays["top_ids"].shape[0]),
        "tokens": int(arrays["tokens"].shape[0]),
        "files": files,
    }


def shard_intact(root: Path, entry: dict[str, Any]) -> bool:
    """Whether every file of a recorded shard exists with its recorded size (cheap check)."""
    folder = Path(root) / shard_name(int(entry["index"]))
    return all(
        (folder / f"{name}.npy").is_file()
        and (folder / f"{name}.npy").stat().st_size == entry["files"][name]["bytes"]
        for name in ARRAYS
    )


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise TargetsError(f"{root}: no {MANIFEST} (not a targets directory, or never started)")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TargetsError(f"{path}: unreadable manifest: {e}") from e
    if manifest.get("format") != FORMAT:
        raise TargetsError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


class TargetSet:
    """Read-only view over a targets directory; arrays are memory-mapped, not loaded.

    Opening checks every recorded file's size (a truncated or missing shard fails here, naming
    it) and, with ``verify=True``, its sha256; and that the arrays' shapes agree.
    """

    def __init__(self, root: str | Path, verify: bool = False) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if not self.manifest.get("complete"):
            done, total = len(self.manifest.get("shards", [])), self.manifest.get("num_shards")
            raise TargetsError(
                f"{self.root}: targets are incomplete ({done} of {total} shards); "
                "rerun `subnet distill targets` with the same arguments to finish them"
            )
        self.k: int = int(self.manifest["k"])
        self.vocab_size: int = int(self.manifest["vocab_size"])
        self.tokenizer_hash: str = str(self.manifest["tokenizer_hash"])
        self._shards = [self._open_shard(entry, verify) for entry in self.manifest["shards"]]
        counts = [len(s["prompt_lens"]) for s in self._shards]
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._starts[-1] == 0:
            raise TargetsError(f"{self.root}: no sequences")

    def _open_shard(self, entry: dict[str, Any], verify: bool) -> dict[str, np.ndarray]:
        folder = self.root / shard_name(int(entry["index"]))
        arrays: dict[str, np.ndarray] = {}
        for name in ARRAYS:
            path = folder / f"{name}.npy"
            want = entry["files"][name]
            size = path.stat().st_size if path.is_file() else None
            if size != want["bytes"]:
                got = "missing" if size is None else f"{size} bytes"
                raise TargetsError(
                    f"{path}: {got}, the manifest records {want['bytes']} bytes (truncated or "
                    "corrupted shard; rerun `subnet distill targets` with the same arguments "
                    "to rebuild it)"
                )
            if verify and file_sha256(path) != want["sha256"]:
                raise TargetsError(f"{path}: sha256 differs from the manifest (corrupted shard)")
            try:
                arrays[name] = np.load(path, mmap_mode="r")
            except ValueError as e:
                raise TargetsError(f"{path}: unreadable array: {e}") from e
        n, off = len(arrays["prompt_lens"]), arrays["seq_offsets"]
        completion = int((np.diff(off) - arrays["prompt_lens"]).sum()) if n else 0
        if (
            len(off) != n + 1
            or int(off[-1]) != len(arrays["tokens"])
            or arrays["top_ids"].shape != (completion, self.k)
            or arrays["top_logprobs"].shape != (completion, self.k)
        ):
            raise TargetsError(f"{folder}: arrays disagree in shape (corrupted shard)")
        arrays["row_offsets"] = np.concatenate(
            [[0], np.cumsum(np.diff(off) - arrays["prompt_lens"])]
        ).astype(np.int64)
        return arrays

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def positions(self) -> int:
        return int(sum(e["positions"] for e in self.manifest["shards"]))

    def __getitem__(self, i: int) -> Example:
        if not 0 <= i < len(self):
            raise IndexError(i)
        s = int(np.searchsorted(self._starts, i, side="right") - 1)
        a, j = self._shards[s], i - int(self._starts[s])
        lo, hi = int(a["seq_offsets"][j]), int(a["seq_offsets"][j + 1])
        r0, r1 = int(a["row_offsets"][j]), int(a["row_offsets"][j + 1])
        return Example(
            tokens=np.asarray(a["tokens"][lo:hi]),
            prompt_len=int(a["prompt_lens"][j]),
            top_ids=np.asarray(a["top_ids"][r0:r1]),
            top_logprobs=np.asarray(a["top_logprobs"][r0:r1]),
        )


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt")


def tokenizer_hash(model_dir: str | Path) -> str:
    """sha256 over the tokenizer files a model folder has (name, size, bytes, in a fixed order).

    Two models with the same hash split text into the same ids, so a student can learn from
    the teacher's per-id distributions. Raises TargetsError if the folder has no tokenizer.
    """
    root = Path(model_dir)
    present = [root / n for n in TOKENIZER_FILES if (root / n).is_file()]
    if not present:
        raise TargetsError(f"{root}: no tokenizer files (looked for {', '.join(TOKENIZER_FILES)})")
    h = hashlib.sha256(b"distill-subnet tokenizer v1\n")
    for path in present:
        data = path.read_bytes()
        h.update(path.name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()

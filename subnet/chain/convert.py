"""SDK values and errors -> ours. The only code that knows bittensor's result shapes."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from typing import Any

import bittensor as bt
from bittensor.error_map import ErrorCode
from bittensor.sp_core import KeyfileError, WrongPasswordError

from subnet.chain.types import Axon, MetagraphView, NeuronView
from subnet.errors import ChainConnectionError, ChainError, ConfigError, SubnetError
from subnet.wallets import COLDKEY_PASSWORD_HELP

RAO_PER_ALPHA = 1_000_000_000
U16_MAX = 65535


def error_name(error: bt.ChainError) -> str:
    """The pallet error name, else the SDK's preflight code (``RATE_LIMITED``, ...)."""
    if error.name:
        return str(error.name)
    return error.code.name if error.code is not None else "UNKNOWN"


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise SDK, transport and key-unlock failures as our errors, naming the operation.

    Anything else (a bug) propagates unchanged, so it keeps its traceback and type.
    """
    try:
        yield
    except SubnetError:
        raise
    except Exception as e:
        ours = translate(what, e)
        if ours is None:
            raise
        raise ours from e


def translate(what: str, error: BaseException) -> SubnetError | None:
    """Our error for ``error`` raised while doing ``what``, or None if it is no chain failure.

    Sorted by type alone, never by message: the SDK wraps the transport (a ``ChainError``
    raised *from* a dropped socket), so the cause chain is searched, outermost first. A lost
    connection or a timeout is a ``ChainConnectionError``; a key that does not unlock is a
    ``ConfigError`` saying what to set; a refusal is a ``ChainError`` carrying its name.
    """
    for e in _causes(error):
        if isinstance(e, SubnetError):  # ours, wrapped by the SDK on the way up: keep its kind
            return _reworded(what, e)
        if isinstance(e, bt.RpcPolicyError):  # the endpoint refused us: 403 stays refused
            msg = f"{what}: {e}"
            return ChainConnectionError(msg, "RPC_POLICY", transient=e.status_code != 403)
        if isinstance(e, TimeoutError):
            detail = f" ({e})" if str(e) else ""
            return ChainConnectionError(f"{what}: no answer in time{detail}", "TIMEOUT")
        if isinstance(e, bt.ConnectionNotReady):
            return ChainConnectionError(f"{what}: {e}", "NOT_CONNECTED")
        if isinstance(e, bt.RpcConnectionError | ConnectionError):
            return ChainConnectionError(f"{what}: {e}", "CONNECTION")
        key = _key_failure(e)
        if key:
            return ConfigError(f"{what}: {key}")
        if isinstance(e, OSError):  # sockets, DNS; local files were sorted out above
            return ChainConnectionError(f"{what}: {e}", "CONNECTION")
    if isinstance(error, bt.ChainError):
        name = error_name(error)
        rate_limited = error.code is ErrorCode.RATE_LIMITED
        return ChainError(_with_name(f"{what}: {error}", name), name, transient=rate_limited)
    if isinstance(error, bt.BittensorError | ValueError):
        return ChainError(f"{what}: {error}", name="INVALID_ARGUMENT")
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it was raised from (``raise ... from``), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _reworded(what: str, e: SubnetError) -> SubnetError:
    """A fresh error of ``e``'s kind naming ``what`` (re-raising ``e`` would loop its causes)."""
    message = f"{what}: {e}"
    if isinstance(e, ChainConnectionError):
        return ChainConnectionError(message, e.name, transient=e.transient)
    if isinstance(e, ChainError):
        return ChainError(message, e.name, transient=e.transient)
    return type(e)(message)


def _key_failure(e: BaseException) -> str:
    """The operator's fix when ``e`` means a wallet key could not be read or unlocked."""
    where = COLDKEY_PASSWORD_HELP
    if isinstance(e, WrongPasswordError):
        return f"wrong password for the wallet key ({where} with the right one)"
    if isinstance(e, KeyfileError):
        return f"cannot unlock the wallet key: {e} ({where})"
    if isinstance(e, EOFError):  # the SDK fell through to an interactive prompt with no TTY
        return f"the wallet key is encrypted and no password was given ({where})"
    if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError):
        return f"cannot read wallet file {e.filename or e}: {e.strerror or e}"
    return ""


def check_result(result: bt.ExtrinsicResult, what: str) -> bt.ExtrinsicResult:
    """The second error channel: a dispatched extrinsic that failed on chain."""
    if result.success:
        return result
    error = result.error
    name = error_name(error) if error is not None else "UNKNOWN"
    rate_limited = error is not None and error.code is ErrorCode.RATE_LIMITED
    message = _with_name(f"{what}: {result.message or name}", name)
    raise ChainError(message, name=name, transient=rate_limited)


def _with_name(message: str, name: str) -> str:
    """Operators grep for the pallet error name; make sure the one-line message carries it."""
    return message if name in message else f"{message} [{name}]"


def result_block(result: bt.ExtrinsicResult) -> int | None:
    """The including block from ``extrinsic_id`` ("<block>-<index>"), when known."""
    if not result.extrinsic_id:
        return None
    head = str(result.extrinsic_id).split("-", 1)[0]
    return int(head) if head.isdigit() else None


def parse_axon(endpoint: str | None) -> Axon | None:
    """``"ip:port"`` / ``"[v6]:port"`` from the SDK -> Axon; None when nothing is served."""
    if not endpoint:
        return None
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        return Axon(ip=host, port=int(port))
    except ValueError:
        return None


def _rao(balance: Any) -> int:
    return int(balance.rao) if balance is not None else 0


def _u16_column(raw: Any, key: str, n: int) -> list[float]:
    """A per-uid u16 column of the runtime's metagraph record as 0..1 (zeros when absent)."""
    column = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(column, list | tuple) or len(column) != n:
        return [0.0] * n
    return [int(v or 0) / U16_MAX for v in column]


def metagraph_view(mg: bt.Metagraph) -> MetagraphView:
    vtrust = _u16_column(mg.raw, "validator_trust", len(mg.neurons))
    neurons = tuple(
        NeuronView(
            uid=int(n.uid),
            hotkey=str(n.hotkey),
            coldkey=str(n.coldkey),
            stake=_rao(n.total_stake) / RAO_PER_ALPHA,
            stake_rao=_rao(n.total_stake),
            validator_permit=bool(n.validator_permit),
            axon=parse_axon(n.axon),
            incentive=float(n.incentive or 0.0),
            dividends=float(n.dividends or 0.0),
            emission=_rao(n.emission) / RAO_PER_ALPHA,
            emission_rao=_rao(n.emission),
            trust=float(n.trust or 0.0),
            consensus=float(n.consensus or 0.0),
            last_update=int(n.last_update or 0),
            block_at_registration=int(n.block_at_registration or 0),
            active=bool(n.active),
            validator_trust=vtrust[i],
        )
        for i, n in enumerate(mg.neurons)
    )
    return MetagraphView(
        netuid=int(mg.netuid),
        block=int(mg.block),
        tempo=int(mg.tempo),
        owner_hotkey=str(mg.owner_hotkey),
        owner_coldkey=str(mg.owner_coldkey),
        neurons=neurons,
    )


def commitment_fields(payload: str, *, max_field: int = 128, max_fields: int = 3) -> dict[str, Any]:
    """A text payload as Commitments ``Raw<n>`` fields (<=128 bytes each, as the pallet allows)."""
    data = payload.encode("utf-8")
    if not data:
        raise ChainError("commitment payload is empty", name="INVALID_ARGUMENT")
    chunks = [data[i : i + max_field] for i in range(0, len(data), max_field)]
    if len(chunks) > max_fields:
        raise ChainError(
            f"commitment payload is {len(data)} bytes; at most {max_field * max_fields} fit",
            name="INVALID_ARGUMENT",
        )
    return {"fields": [{f"Raw{len(c)}": "0x" + c.hex()} for c in chunks]}

"""SDK values and errors -> ours. The only code that knows bittensor's result shapes."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from typing import Any

import bittensor as bt

from subnet.chain.types import Axon, MetagraphView, NeuronView
from subnet.errors import ChainError, ConfigError, SubnetError

RAO_PER_ALPHA = 1_000_000_000


def error_name(error: bt.ChainError) -> str:
    """The pallet error name, else the SDK's preflight code (``RATE_LIMITED``, ...)."""
    if error.name:
        return str(error.name)
    return error.code.name if error.code is not None else "UNKNOWN"


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise SDK and key-unlock failures as our errors, naming the operation."""
    try:
        yield
    except SubnetError:
        raise
    except bt.ChainError as e:
        raise ChainError(_with_name(f"{what}: {e}", error_name(e)), name=error_name(e)) from e
    except bt.BittensorError as e:
        raise ChainError(f"{what}: {e}", name="INVALID_ARGUMENT") from e
    except EOFError as e:  # the SDK fell through to an interactive prompt with no TTY
        raise ConfigError(
            f"{what}: the coldkey is encrypted and no password was given "
            "(set BT_WALLET_PASSWORD or BT_WALLET_PASSWORD_FILE, or --wallet.password-file)"
        ) from e
    except ValueError as e:
        if "password" in str(e).lower() or "unlock" in str(e).lower():
            raise ConfigError(f"{what}: {e}") from e
        raise ChainError(f"{what}: {e}", name="INVALID_ARGUMENT") from e
    except FileNotFoundError as e:
        raise ConfigError(f"{what}: key file missing: {e.filename}") from e


def check_result(result: bt.ExtrinsicResult, what: str) -> bt.ExtrinsicResult:
    """The second error channel: a dispatched extrinsic that failed on chain."""
    if result.success:
        return result
    error = result.error
    name = error_name(error) if error is not None else "UNKNOWN"
    raise ChainError(_with_name(f"{what}: {result.message or name}", name), name=name)


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


def metagraph_view(mg: bt.Metagraph) -> MetagraphView:
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
        )
        for n in mg.neurons
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

"""What a validator checks on chain before it loads anything, and says when it starts.

A validator that is not registered cannot be answered by miners (their caller policy refuses
unregistered hotkeys) nor set weights, so it stops at once with the command that registers it,
instead of querying miners for 403s. A registered validator states its uid, stake and permit
in one line. Without a validator permit (the chain grants one to the top ``max_validators``
by stake) it keeps scoring, so its EMA is warm when the permit comes, but says that it cannot
set weights until then; :class:`PermitWatch` says it again when the permit comes or goes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from subnet.chain.protocol import Chain
from subnet.chain.types import MetagraphView
from subnet.errors import ConfigError

log = logging.getLogger("subnet.validator")


@dataclass(frozen=True)
class Standing:
    """The validator's row of the metagraph when it started."""

    uid: int
    stake: float  # alpha
    permit: bool
    validator_trust: float


def register_hint(netuid: int, network: str, wallet_name: str, wallet_hotkey: str) -> str:
    """The commands that register a validator hotkey (ours, and btcli's)."""
    return (
        f"`subnet validator --register --network {network} --netuid {netuid} "
        f"--wallet.name {wallet_name} --wallet.hotkey {wallet_hotkey}` (burns the registration "
        f"cost) or `btcli subnets register --netuid {netuid} --wallet.name {wallet_name} "
        f"--wallet.hotkey {wallet_hotkey}`"
    )


def may_set_weights(mg: MetagraphView, hotkey: str) -> bool:
    """The chain's rule: a validator permit, or the subnet owner's hotkey."""
    me = mg.by_hotkey(hotkey)
    return me is not None and (me.validator_permit or hotkey == mg.owner_hotkey)


async def check_standing(
    chain: Chain,
    netuid: int,
    wallet: Any,
    hotkey: str,
    *,
    wallet_name: str,
    wallet_hotkey: str,
    register: bool = False,
) -> Standing:
    """Registered (or registered now with ``register``), else a ConfigError that says how.

    Logs one line with uid, stake and permit, and a warning when there is no permit yet.
    """
    uid = await chain.is_registered(netuid, hotkey)
    if uid is None:
        if not register:
            how = register_hint(netuid, chain.network, wallet_name, wallet_hotkey)
            raise ConfigError(
                f"hotkey {hotkey} is not registered on netuid {netuid} of {chain.network}: "
                f"miners refuse unregistered callers and the chain refuses their weights; "
                f"register it with {how}"
            )
        uid = await chain.register(netuid, wallet)
        log.info("registered as uid %d on netuid %d", uid, netuid)
    mg = await chain.metagraph(netuid, max_age_blocks=0)
    me = mg.by_hotkey(hotkey)
    if me is None:  # deregistered between the two reads
        raise ConfigError(f"hotkey {hotkey} lost its uid on netuid {netuid} while starting")
    standing = Standing(me.uid, me.stake, may_set_weights(mg, hotkey), me.validator_trust)
    log.info(
        "validator uid %d on netuid %d of %s: stake %.1f α, validator permit %s, vtrust %.3f",
        standing.uid,
        netuid,
        chain.network,
        standing.stake,
        "yes" if standing.permit else "no",
        standing.validator_trust,
    )
    if not standing.permit:
        log.warning(no_permit_message(mg))
    return standing


def no_permit_message(mg: MetagraphView) -> str:
    ranked = sorted((n.stake for n in mg.validators), reverse=True)
    least = f"; the smallest permit holder has {ranked[-1]:.1f} α" if ranked else ""
    return (
        "no validator permit: scoring continues, but weights cannot be set until the chain "
        f"grants one (to the top validators by stake at an epoch{least})"
    )


class PermitWatch:
    """Says (once) when the permit comes or goes; ``allowed(mg)`` gates each weight set."""

    def __init__(self, hotkey: str, permit: bool | None = None) -> None:
        self.hotkey = hotkey
        self.state = None if permit is None else ("permit" if permit else "no permit")

    def allowed(self, mg: MetagraphView) -> bool:
        if may_set_weights(mg, self.hotkey):
            now = "permit"
        else:
            now = "no permit" if mg.by_hotkey(self.hotkey) is not None else "unregistered"
        if now != self.state:
            if now == "permit":
                log.info("validator permit granted: setting weights")
            elif now == "unregistered":
                log.error("hotkey %s is no longer registered: weights cannot be set", self.hotkey)
            else:
                log.warning(no_permit_message(mg))
        self.state = now
        return now == "permit"

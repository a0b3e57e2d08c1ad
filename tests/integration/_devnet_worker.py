"""One OS process on a shared devnet file (run by test_devnet_multiprocess.py).

usage: python _devnet_worker.py validator|miner <devnet file>
Prints one JSON line with what it saw, exits 0 on success.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import bittensor as bt
from _devnet_kit import DevWallet

from subnet.chain.devnet import Devnet

NETUID = 1
DEADLINE_S = 90.0


async def until(predicate, what: str):
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise TimeoutError(f"gave up waiting for {what}")


async def validator(net: Devnet, client: bt.Client) -> dict:
    me, miner = DevWallet.of("Bob"), DevWallet.of("Charlie")
    (
        await client.execute(bt.BurnedRegister(netuid=NETUID, hotkey_ss58=me.hot), me)
    ).raise_for_failure()
    net.set_stake(NETUID, me.hot, 1000 * 10**9)
    uid = await until(lambda: client.read("uid", hotkey_ss58=miner.hot, netuid=NETUID), "miner")
    # Weights set in the miner's registration block are "outdated" for Yuma: wait one block.
    mg = await client.subnets.metagraph(NETUID)
    assert mg is not None
    registered_at = mg.neuron(uid).block_at_registration
    await client.wait_for_block(registered_at + 1)
    res = await client.execute(bt.SetWeights(netuid=NETUID, weights={uid: 1.0}), me)
    res.raise_for_failure()
    return {"role": "validator", "miner_uid": uid, "set_at": res.extrinsic_id}


async def miner(net: Devnet, client: bt.Client) -> dict:
    me = DevWallet.of("Charlie")
    call = bt.calls.SubtensorModule.burned_register(netuid=NETUID, hotkey=me.hot)
    (await client.submit_call(call, me)).raise_for_failure()
    serve = bt.ServeAxon(netuid=NETUID, ip="127.0.0.2", port=8091)
    (await client.execute(serve, me)).raise_for_failure()

    async def paid():
        mg = await client.subnets.metagraph(NETUID)
        mine = mg.by_hotkey(me.hot) if mg is not None else None
        return mine if mine is not None and mine.incentive > 0 else None

    mine = await until(paid, "incentive")
    return {
        "role": "miner",
        "incentive": mine.incentive,
        "emission": mine.emission.rao,
        "axon": mine.axon,
    }


async def main(role: str, path: str) -> None:
    net = Devnet.open(path)
    async with bt.Client("local", substrate=net.substrate()) as client:
        out = await (validator if role == "validator" else miner)(net, client)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

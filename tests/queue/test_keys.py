from __future__ import annotations

import redis.crc

from certq.queue.keys import QueueKeys


def crc16_slot(key: str) -> int:
    """Redis Cluster's slot: CRC16/XMODEM of the hash tag (or the whole key) mod 16384."""
    data = key.encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


def every_key(keys: QueueKeys) -> list[str]:
    return [
        *keys.all_fixed(),
        keys.job("j-1"),
        keys.lock("j-1"),
        keys.dedupe("m:us-east-1"),
        keys.limiter("us-east-1"),
        keys.worker("host:1"),
    ]


def test_contract_key_names() -> None:
    keys = QueueKeys("myia", "model-certification")
    assert keys.wait == "myia:model-certification:wait"
    assert keys.active == "myia:model-certification:active"
    assert keys.completed == "myia:model-certification:completed"
    assert keys.failed == "myia:model-certification:failed"
    assert keys.delayed == "myia:model-certification:delayed"


def test_every_key_starts_with_prefix_and_queue() -> None:
    keys = QueueKeys("myia", "model-certification")
    assert all(key.startswith("myia:model-certification:") for key in every_key(keys))
    assert len(set(every_key(keys))) == len(every_key(keys))


def test_hash_tagged_prefix_puts_every_key_in_one_cluster_slot() -> None:
    keys = QueueKeys("{myia}", "model-certification")
    slots = {crc16_slot(key) for key in every_key(keys)}
    assert slots == {crc16_slot("myia")}
    assert slots == {redis.crc.key_slot(key.encode()) for key in every_key(keys)}


def test_untagged_prefix_spreads_keys_over_slots() -> None:
    keys = QueueKeys("myia", "model-certification")
    assert len({crc16_slot(key) for key in every_key(keys)}) > 1
    assert crc16_slot("123456789") == 0x31C3 % 16384  # the CRC16/XMODEM check value

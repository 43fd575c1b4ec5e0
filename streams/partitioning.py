"""Kafka's default key partitioner (murmur2), so every client agrees where an `event_id` lives.

Predictions and labels are joined inside one partition, which only works when every producer
(our SDK, Faust/aiokafka, Java clients, kcat with ``-X partitioner=murmur2_random``) maps a key
to the same partition. librdkafka's default (CRC32) does not, so the SDK pins murmur2 and the
batch envelope computes partitions itself with this function.

>>> partition_for(b"a", 6) == partition_for(b"a", 6)
True
>>> murmur2(b"21")  # the value Kafka's Java client computes for this key
-973932308
"""

from __future__ import annotations

__all__ = ["murmur2", "partition_for"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash as a signed 32-bit integer (org.apache.kafka.common.utils.Utils)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n_blocks = length // 4
    for i in range(n_blocks):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length & 3
    base = n_blocks * 4
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions

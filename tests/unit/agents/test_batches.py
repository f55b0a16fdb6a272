"""The throttle's batch sender picks the partitions Kafka's default partitioner would."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from tocsin.agents.batches import murmur2, partition_for, partition_for_key, partition_for_text


@given(st.binary(max_size=300))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.text(max_size=120), st.integers(1, 64))
def test_partition_of_a_text_key_is_the_default_partitioners(key: str, partitions: int) -> None:
    expected = (aiokafka_murmur2(key.encode()) & 0x7FFFFFFF) % partitions
    assert partition_for(key.encode(), partitions) == expected == partition_for_text(key, partitions)
    assert partition_for_key(key.encode(), partitions) == expected


"""A Fjord session through the Python client that openapi-python-client generates from
openapi.yaml (clients/python/test.sh generates it and runs this against a real server).

Only the generated typed functions and models are used, never a hand-written request:
create a topic with 2 partitions, produce keyed and unkeyed JSON records (and one raw
octet-stream value), read each partition back from `earliest`, join a consumer group
(`auto_offset_reset: earliest`, `auto_commit: false`), poll, commit with the poll's
generation, read the committed offsets, seek and poll again, leave, delete the group
and the topic. Every answer's content is checked, not only its status.

    PYTHONPATH=<dir holding fjord_client> python session.py --base-url http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import time
import traceback
import uuid
from typing import Any

import httpx

from fjord_client import Client
from fjord_client.api.cluster import readyz
from fjord_client.api.groups import (
    commit_offsets,
    delete_group,
    describe_group,
    group_offsets,
    join_group,
    leave_group,
    list_groups,
    poll,
    seek,
)
from fjord_client.api.records import consume, partition_offsets, produce_to_partition, produce_to_topic
from fjord_client.api.topics import create_topic, delete_topic, get_topic, list_topics
from fjord_client.models import (
    CommitEntry,
    CommitRequest,
    ConsumedRecord,
    Format,
    ConsumeResponse,
    CreateTopic,
    ErrorBody,
    GroupDescription,
    GroupList,
    GroupOffsets,
    HeaderIn,
    Health,
    JoinRequest,
    MemberAssignment,
    OffsetReset,
    PartitionOffsets,
    PollResponse,
    ProduceBody,
    ProducedOffset,
    ProduceRecord,
    ProduceResponse,
    SeekRequest,
    SeekResponse,
    SeekToEarliest,
    SeekToOffset,
    TopicConfigChanges,
    TopicDescription,
    TopicList,
)
from fjord_client.types import UNSET, File, Response

PASSED = 0


class CheckFailed(AssertionError):
    pass


def check(cond: bool, what: str) -> None:
    global PASSED
    if not cond:
        raise CheckFailed(what)
    PASSED += 1


def eq(got: Any, want: Any, what: str) -> None:
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def answer(resp: Response[Any], status: int, model: type | None, what: str) -> Any:
    """Checks an answer's status and that the generated client parsed it as `model`."""
    body = resp.content.decode("utf-8", "replace")[:2000]
    check(resp.status_code == status, f"{what}: HTTP {int(resp.status_code)}, want {status}; body: {body}")
    if model is not None:
        check(
            isinstance(resp.parsed, model),
            f"{what}: parsed as {type(resp.parsed).__name__}, want {model.__name__}; body: {body}",
        )
    return resp.parsed


def error(resp: Response[Any], status: int, code: str, what: str) -> None:
    """Checks an error answer: the status and the parsed `{"error": {code, message, retriable}}`."""
    err: ErrorBody = answer(resp, status, ErrorBody, what)
    eq(err.error.code, code, f"{what}: error code")
    check(isinstance(err.error.message, str) and err.error.message != "", f"{what}: error message is empty")
    eq(err.error.retriable, False, f"{what}: retriable")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as an unsigned 32-bit int."""
    m = 0x5BD1E995
    h = (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    for i in range(len(data) // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rem = len(data) & ~3, len(data) % 4
    if rem == 3:
        h ^= data[tail + 2] << 16
    if rem >= 2:
        h ^= data[tail + 1] << 8
    if rem >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def kafka_partition(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def val(x: Any) -> Any:
    """A generated optional field: None when unset or null."""
    return None if x is UNSET else x


def check_records(got: list[ConsumedRecord], want: list[dict[str, Any]], topic: str, what: str) -> None:
    """`want`: dicts with partition, offset, key, value or value_base64, headers [(name, value)]."""
    eq(
        [(r.partition, r.offset) for r in got],
        [(w["partition"], w["offset"]) for w in want],
        f"{what}: partitions and offsets",
    )
    for r, w in zip(got, want):
        at = f"{what}: record {r.partition}:{r.offset}"
        check(isinstance(r, ConsumedRecord), f"{at}: not a ConsumedRecord")
        eq(r.topic, topic, f"{at} topic")
        eq(val(r.key), w.get("key"), f"{at} key")
        eq(val(r.key_base64), None, f"{at} key_base64")
        eq(val(r.value), w.get("value"), f"{at} value")
        eq(val(r.value_base64), w.get("value_base64"), f"{at} value_base64")
        eq(
            [(h.name, val(h.value), val(h.value_base64)) for h in r.headers],
            [(n, v, None) for n, v in w.get("headers", [])],
            f"{at} headers",
        )
        eq(r.timestamp, w["timestamp"], f"{at} timestamp")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True)
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    topic = f"pyclient-{run}"
    group = f"pyclient-group-{run}"
    client_id = "pyclient"
    # Undocumented statuses raise instead of parsing to None.
    client = Client(base_url=args.base_url, raise_on_unexpected_status=True, timeout=httpx.Timeout(30.0))

    with client as c:
        # --- cluster ---
        health = answer(readyz.sync_detailed(client=c), 200, Health, "readyz")
        eq(health.status, "ok", "readyz status")

        # --- create a topic with 2 partitions ---
        config = TopicConfigChanges(retention_ms=3_600_000)
        created: TopicDescription = answer(
            create_topic.sync_detailed(client=c, body=CreateTopic(name=topic, partitions=2, config=config)),
            201,
            TopicDescription,
            "create_topic",
        )
        eq(created.name, topic, "created topic name")
        eq(created.replication_factor, 1, "created replication_factor")
        eq([p.partition for p in created.partitions], [0, 1], "created partitions")
        for p in created.partitions:
            eq(
                (p.replicas, p.isr, p.leader is not None),
                ([p.leader], [p.leader], True),
                f"partition {p.partition} replicas/isr/leader",
            )
        eq(created.config.retention_ms, 3_600_000, "created config retention.ms")
        eq(created.config.cleanup_policy, "delete", "created config cleanup.policy (default)")
        error(
            create_topic.sync_detailed(client=c, body=CreateTopic(name=topic, partitions=2)),
            409,
            "topic_already_exists",
            "create_topic again",
        )
        topics: TopicList = answer(list_topics.sync_detailed(client=c), 200, TopicList, "list_topics")
        eq(
            [(t.partitions, t.replication_factor) for t in topics.topics if t.name == topic],
            [(2, 1)],
            "list_topics entry",
        )
        print(f"session: created topic {topic} with 2 partitions")

        # --- produce ---
        now = int(time.time() * 1000)
        # Keyed, to the topic: each key on its murmur2 partition (Kafka's default partitioner).
        keyed = [
            ("alice", {"item": "book", "qty": 1}),
            ("bob", {"item": "pen", "qty": 2}),
            ("alice", {"item": "ink", "qty": 3, "tags": ["blue", "refill"], "price": 2.5}),
            ("carol", None),  # a tombstone
        ]
        body = ProduceBody(
            records=[
                ProduceRecord(
                    key=k,
                    value=v,
                    timestamp=now,
                    headers=[HeaderIn(name="source", value="pyclient")] if k == "bob" else UNSET,
                )
                for k, v in keyed
            ]
        )
        produced: ProduceResponse = answer(
            produce_to_topic.sync_detailed(topic, client=c, body=body, acks="all"),
            200,
            ProduceResponse,
            "produce keyed",
        )
        eq(len(produced.offsets), len(keyed), "produce keyed: one offset per record")
        # What each partition must hold, filled in from the produce answers.
        want: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
        for (k, v), o in zip(keyed, produced.offsets):
            check(isinstance(o, ProducedOffset), "produce keyed: offsets are ProducedOffsets")
            eq(o.partition, kafka_partition(k, 2), f"produce keyed: partition of key {k!r} (murmur2)")
            eq(val(o.error), None, f"produce keyed: error of key {k!r}")
            eq(o.timestamp, now, f"produce keyed: timestamp of key {k!r}")
            want[o.partition].append(
                {
                    "partition": o.partition,
                    "offset": o.offset,
                    "key": k,
                    "value": v,
                    "timestamp": now,
                    "headers": [("source", "pyclient")] if k == "bob" else [],
                }
            )
        # Unkeyed, to the topic: one partition for the whole request.
        unkeyed = ["plain text", 42, [1, "two", {"three": 3}], {"nested": {"deep": [True, False, None]}}]
        produced = answer(
            produce_to_topic.sync_detailed(
                topic, client=c, acks="1", body=ProduceBody(records=[ProduceRecord(value=v) for v in unkeyed])
            ),
            200,
            ProduceResponse,
            "produce unkeyed",
        )
        eq(len(produced.offsets), len(unkeyed), "produce unkeyed: one offset per record")
        eq(len({o.partition for o in produced.offsets}), 1, "produce unkeyed: one partition per request")
        for v, o in zip(unkeyed, produced.offsets):
            check(
                isinstance(o.timestamp, int) and abs(o.timestamp - now) < 600_000,
                f"produce unkeyed: timestamp {o.timestamp!r} is about now",
            )
            want[o.partition].append(
                {"partition": o.partition, "offset": o.offset, "value": v, "timestamp": o.timestamp, "headers": []}
            )
        # To partition 1 explicitly: a JSON record, then one raw value (application/octet-stream,
        # the key as a query parameter).
        produced = answer(
            produce_to_partition.sync_detailed(
                topic,
                1,
                client=c,
                body=ProduceBody(records=[ProduceRecord(key="dave", value="to partition 1", timestamp=now)]),
            ),
            200,
            ProduceResponse,
            "produce to partition 1",
        )
        eq([(o.partition, val(o.error)) for o in produced.offsets], [(1, None)], "produce to partition 1: partition")
        want[1].append(
            {
                "partition": 1,
                "offset": produced.offsets[0].offset,
                "key": "dave",
                "value": "to partition 1",
                "timestamp": now,
                "headers": [],
            }
        )
        raw = b"\x00\x01\xfe\xffnot json"
        produced = answer(
            produce_to_partition.sync_detailed(
                topic, 1, client=c, body=File(payload=io.BytesIO(raw)), key="erin", timestamp=now
            ),
            200,
            ProduceResponse,
            "produce octet-stream to partition 1",
        )
        eq([(o.partition, val(o.error)) for o in produced.offsets], [(1, None)], "produce octet-stream: partition")
        want[1].append(
            {
                "partition": 1,
                "offset": produced.offsets[0].offset,
                "key": "erin",
                "value_base64": base64.b64encode(raw).decode(),
                "timestamp": now,
                "headers": [],
            }
        )
        for p in (0, 1):
            eq([w["offset"] for w in want[p]], list(range(len(want[p]))), f"partition {p}: dense offsets from 0")
        check(all(want[p] for p in (0, 1)), "both partitions got records")
        error(
            produce_to_partition.sync_detailed(topic, 2, client=c, body=ProduceBody(records=[ProduceRecord(value=1)])),
            404,
            "unknown_partition",
            "produce to partition 2",
        )
        print(f"session: produced {len(want[0])} records to partition 0 and {len(want[1])} to partition 1")

        # --- consume each partition from earliest ---
        for p in (0, 1):
            got: ConsumeResponse = answer(
                consume.sync_detailed(topic, p, client=c, offset="earliest"),
                200,
                ConsumeResponse,
                f"consume partition {p}",
            )
            check_records(got.records, want[p], topic, f"consume partition {p}")
            eq(
                (got.next_offset, got.high_watermark),
                (len(want[p]), len(want[p])),
                f"consume partition {p}: next_offset, high_watermark",
            )
            offs: PartitionOffsets = answer(
                partition_offsets.sync_detailed(topic, p, client=c), 200, PartitionOffsets, f"partition_offsets {p}"
            )
            eq(
                (offs.partition, offs.log_start_offset, offs.high_watermark, offs.log_end_offset),
                (p, 0, len(want[p]), len(want[p])),
                f"partition_offsets {p}",
            )
        # From an offset, a page of one, in base64.
        got = answer(
            consume.sync_detailed(topic, 0, client=c, offset="1", max_records=1, format_=Format.BASE64),
            200,
            ConsumeResponse,
            "consume partition 0 from offset 1, base64",
        )
        eq(
            [(r.offset, val(r.key_base64), val(r.key), val(r.value)) for r in got.records],
            [(1, base64.b64encode(want[0][1]["key"].encode()).decode() if "key" in want[0][1] else None, None, None)],
            "consume from offset 1, base64: key",
        )
        eq(got.next_offset, 2, "consume from offset 1: next_offset")
        error(
            consume.sync_detailed(topic, 0, client=c, offset=str(len(want[0]) + 5)),
            416,
            "offset_out_of_range",
            "consume beyond the log end",
        )
        print("session: consumed both partitions back from earliest")

        # --- join a consumer group ---
        joined: MemberAssignment = answer(
            join_group.sync_detailed(
                group,
                client=c,
                body=JoinRequest(
                    topics=[topic],
                    auto_offset_reset=OffsetReset.EARLIEST,
                    auto_commit=False,
                    client_id=client_id,
                    session_timeout_ms=30_000,
                ),
            ),
            200,
            MemberAssignment,
            "join_group",
        )
        member = joined.member_id
        check(member.startswith(client_id + "-"), f"member id {member!r} starts with the client id")
        check(joined.generation >= 1, f"generation {joined.generation} >= 1")
        eq(sorted((tp.topic, tp.partition) for tp in joined.assignment), [(topic, 0), (topic, 1)], "join: assignment")
        eq(joined.pending, [], "join: pending")
        groups: GroupList = answer(list_groups.sync_detailed(client=c), 200, GroupList, "list_groups")
        eq([(g.state, g.members) for g in groups.groups if g.group == group], [("stable", 1)], "list_groups entry")
        print(f"session: joined {group} as {member}, generation {joined.generation}")

        # --- poll until every record is in ---
        def poll_all(expect: dict[int, list[dict[str, Any]]], what: str) -> int:
            """Polls until the records in `expect` came, checks them; returns the last generation."""
            total = sum(len(v) for v in expect.values())
            got: list[ConsumedRecord] = []
            deadline = time.monotonic() + 30
            while len(got) < total:
                check(time.monotonic() < deadline, f"{what}: {len(got)} of {total} records within 30 s")
                polled: PollResponse = answer(
                    poll.sync_detailed(group, member, client=c, timeout_ms=2000), 200, PollResponse, what
                )
                eq(polled.member_id, member, f"{what}: member_id")
                eq(
                    sorted((tp.topic, tp.partition) for tp in polled.assignment),
                    [(topic, 0), (topic, 1)],
                    f"{what}: assignment",
                )
                eq(polled.pending, [], f"{what}: pending")
                eq(polled.generation, joined.generation, f"{what}: generation (one member: no rebalance)")
                got.extend(polled.records)
            for p in (0, 1):
                check_records([r for r in got if r.partition == p], expect[p], topic, f"{what}, partition {p}")
            eq(len(got), total, f"{what}: no record twice")
            # Nothing more: the member's position moved past them, commit or not.
            polled = answer(
                poll.sync_detailed(group, member, client=c, timeout_ms=200), 200, PollResponse, f"{what}, again"
            )
            eq(polled.records, [], f"{what}: a further poll finds nothing new")
            return polled.generation

        generation = poll_all(want, "poll")
        print(f"session: polled {sum(len(v) for v in want.values())} records")

        # Before a commit: no committed offset, lag counted from the log start.
        offsets: GroupOffsets = answer(
            group_offsets.sync_detailed(group, client=c), 200, GroupOffsets, "group_offsets before commit"
        )
        eq(offsets.group, group, "group_offsets: group")
        eq(
            [
                (o.topic, o.partition, val(o.offset), val(o.member_id), val(o.high_watermark), val(o.lag))
                for o in offsets.offsets
            ],
            [(topic, p, None, member, len(want[p]), len(want[p])) for p in (0, 1)],
            "group_offsets before commit",
        )

        # --- commit with the poll's generation ---
        def commit(at: dict[int, int], generation: int) -> Response[Any]:
            return commit_offsets.sync_detailed(
                group,
                client=c,
                body=CommitRequest(
                    member_id=member,
                    generation=generation,
                    offsets=[
                        CommitEntry(topic=topic, partition=p, offset=o, metadata=f"pyclient {p}") for p, o in at.items()
                    ],
                ),
            )

        error(commit({0: 1}, generation + 1), 409, "stale_generation", "commit with a wrong generation")
        ends = {p: len(want[p]) for p in (0, 1)}
        answer(commit(ends, generation), 204, None, "commit_offsets")
        offsets = answer(group_offsets.sync_detailed(group, client=c), 200, GroupOffsets, "group_offsets after commit")
        eq(
            [
                (
                    o.topic,
                    o.partition,
                    val(o.offset),
                    val(o.metadata),
                    val(o.member_id),
                    val(o.high_watermark),
                    val(o.lag),
                )
                for o in offsets.offsets
            ],
            [(topic, p, ends[p], f"pyclient {p}", member, ends[p], 0) for p in (0, 1)],
            "group_offsets after commit",
        )
        described: GroupDescription = answer(
            describe_group.sync_detailed(group, client=c), 200, GroupDescription, "describe_group"
        )
        eq(
            (described.group, described.state, described.generation, val(described.assignor)),
            (group, "stable", generation, "range"),
            "describe_group: group, state, generation, assignor",
        )
        eq(
            [
                (
                    m.member_id,
                    val(m.client_id),
                    m.topics,
                    m.auto_offset_reset,
                    m.auto_commit,
                    m.session_timeout_ms,
                    sorted((tp.topic, tp.partition) for tp in m.assignment),
                    m.pending,
                )
                for m in described.members
            ],
            [(member, client_id, [topic], OffsetReset.EARLIEST, False, 30_000, [(topic, 0), (topic, 1)], [])],
            "describe_group: members",
        )
        eq(
            sorted((o.topic, o.partition, o.offset, val(o.metadata)) for o in described.offsets),
            [(topic, p, ends[p], f"pyclient {p}") for p in (0, 1)],
            "describe_group: committed offsets",
        )
        check(
            all(abs(o.commit_timestamp - time.time() * 1000) < 600_000 for o in described.offsets),
            "describe_group: commit timestamps are about now",
        )
        print(f"session: committed {ends} in generation {generation}")

        # --- seek back (both shapes of `to`) and poll again ---
        sought: SeekResponse = answer(
            seek.sync_detailed(group, client=c, body=SeekRequest(topic=topic, to=SeekToEarliest.EARLIEST)),
            200,
            SeekResponse,
            "seek to earliest",
        )
        eq(
            sorted((s.topic, s.partition, s.offset) for s in sought.offsets),
            [(topic, 0, 0), (topic, 1, 0)],
            "seek to earliest",
        )
        sought = answer(
            seek.sync_detailed(
                group, client=c, body=SeekRequest(topic=topic, partitions=[1], to=SeekToOffset(offset=2))
            ),
            200,
            SeekResponse,
            "seek partition 1 to offset 2",
        )
        eq([(s.topic, s.partition, s.offset) for s in sought.offsets], [(topic, 1, 2)], "seek partition 1 to offset 2")
        generation = poll_all({0: want[0], 1: want[1][2:]}, "poll after seek")
        answer(commit(ends, generation), 204, None, "commit_offsets after seek")
        offsets = answer(group_offsets.sync_detailed(group, client=c), 200, GroupOffsets, "group_offsets after seek")
        eq(
            [(o.partition, val(o.offset), val(o.lag)) for o in offsets.offsets],
            [(0, ends[0], 0), (1, ends[1], 0)],
            "group_offsets after seek and commit",
        )
        print("session: sought back, polled again and committed")

        # --- leave, delete the group and the topic ---
        answer(leave_group.sync_detailed(group, member, client=c), 204, None, "leave_group")
        error(poll.sync_detailed(group, member, client=c), 404, "unknown_member_id", "poll after leaving")
        described = answer(
            describe_group.sync_detailed(group, client=c), 200, GroupDescription, "describe_group after leaving"
        )
        eq((described.state, described.members), ("empty", []), "describe_group after leaving: state, members")
        eq(
            sorted((o.partition, o.offset) for o in described.offsets),
            [(0, ends[0]), (1, ends[1])],
            "describe_group after leaving: the commits stay",
        )
        answer(delete_group.sync_detailed(group, client=c), 204, None, "delete_group")
        error(describe_group.sync_detailed(group, client=c), 404, "unknown_group", "describe_group after delete")
        answer(delete_topic.sync_detailed(topic, client=c), 204, None, "delete_topic")
        error(get_topic.sync_detailed(topic, client=c), 404, "unknown_topic", "get_topic after delete")
        topics = answer(list_topics.sync_detailed(client=c), 200, TopicList, "list_topics after delete")
        eq([t.name for t in topics.topics if t.name == topic], [], "list_topics after delete")
        print("session: left the group, deleted the group and the topic")
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except CheckFailed as e:
        print(f"session: FAILED: {e}", file=sys.stderr)
        print(f"pyclient: {PASSED} passed, 1 failed")
        sys.exit(1)
    except Exception:  # an exception from the generated client (an undocumented status, a parse error)
        traceback.print_exc()
        print(f"pyclient: {PASSED} passed, 1 failed")
        sys.exit(1)
    print(f"pyclient: {PASSED} passed, 0 failed")
    sys.exit(rc)

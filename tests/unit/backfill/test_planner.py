"""BackfillPlanner: decisions from the listing alone, across pages and continuations."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from s3torrent.backfill.planner import BackfillPlanner, PlannedObject
from s3torrent.model import ListedObject, SkipReason
from s3torrent.settings import Settings

BUCKET = "bkt"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = Settings.from_mapping({"buckets": [{"name": BUCKET}]})


def obj(key: str, *, size: int = 10, at: int = 0, storage_class: str | None = None) -> ListedObject:
    return ListedObject(
        key=key,
        size=size,
        etag=f'"{key}"',
        last_modified=T0 + timedelta(seconds=at),
        storage_class=storage_class,
    )


def listing(*items: ListedObject) -> list[ListedObject]:
    """Items in the order S3 lists them (UTF-8 binary order = code point order)."""
    return sorted(items, key=lambda item: item.key)


def plan(
    items: list[ListedObject], *, page_size: int = 1000, settings: Settings = SETTINGS
) -> dict[str, PlannedObject]:
    planner = BackfillPlanner(settings, BUCKET)
    decided: list[PlannedObject] = []
    for start in range(0, len(items), page_size):
        decided += planner.feed(items[start : start + page_size])
    decided += planner.finish()
    by_key = {item.key: item for item in decided}
    assert len(by_key) == len(decided), "an object was decided twice"
    return by_key


def actions(decided: dict[str, PlannedObject]) -> dict[str, str]:
    return {key: item.action for key, item in decided.items()}


def test_fresh_stale_missing() -> None:
    items = listing(
        obj("fresh.bin", at=0),
        obj("fresh.bin.torrent", at=0),  # same second: fresh
        obj("stale.bin", at=10),
        obj("stale.bin.torrent", at=5),
        obj("missing.bin"),
    )
    assert actions(plan(items)) == {
        "fresh.bin": "fresh",
        "stale.bin": "stale",
        "missing.bin": "missing",
    }


def test_keys_between_an_object_and_its_torrent() -> None:
    # "a" < "a-1" < "a.b" < "a.torrent" < "a/x" < "a0": a's torrent comes after a.b.
    items = listing(
        obj("a", at=0),
        obj("a-1"),
        obj("a.b"),
        obj("a.torrent", at=1),
        obj("a/x"),
        obj("a/x.torrent", at=1),
        obj("a0"),
    )
    assert [item.key for item in items] == [
        "a",
        "a-1",
        "a.b",
        "a.torrent",
        "a/x",
        "a/x.torrent",
        "a0",
    ]
    assert actions(plan(items)) == {
        "a": "fresh",
        "a-1": "missing",
        "a.b": "missing",
        "a/x": "fresh",
        "a0": "missing",
    }


@pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
def test_torrent_on_a_later_page(page_size: int) -> None:
    items = listing(obj("a", at=3), obj("a-1"), obj("a-2"), obj("a.torrent", at=3), obj("b"))
    assert actions(plan(items, page_size=page_size)) == {
        "a": "fresh",
        "a-1": "missing",
        "a-2": "missing",
        "b": "missing",
    }


def test_an_object_is_held_only_until_the_listing_passes_its_torrent() -> None:
    planner = BackfillPlanner(SETTINGS, BUCKET)
    assert planner.feed([obj("a"), obj("a-1")]) == []  # a.torrent may still come
    decided = planner.feed([obj("a.b")])  # after "a-1.torrent", before "a.torrent"
    assert [item.key for item in decided] == ["a-1"]
    decided = planner.feed([obj("b")])  # past "a.torrent" and "a.b.torrent": none for either
    assert {(item.key, item.action) for item in decided} == {("a", "missing"), ("a.b", "missing")}
    assert [(item.key, item.action) for item in planner.finish()] == [("b", "missing")]


def test_orphan_torrents_and_torrent_keys_are_never_sources() -> None:
    planner = BackfillPlanner(SETTINGS, BUCKET)
    decided = planner.feed(listing(obj("gone.bin.torrent"), obj("x.torrent.torrent"), obj("y")))
    decided += planner.finish()
    assert [(item.key, item.action) for item in decided] == [("y", "missing")]
    assert planner.listed == 1
    assert planner.torrents_listed == 2
    assert planner.orphans == 2


def test_skips_decided_from_the_listing() -> None:
    settings = Settings.from_mapping(
        {"buckets": [{"name": BUCKET, "prefix": "in/"}], "max_object_bytes": 100}
    )
    items = listing(
        obj("in/"),  # a directory marker
        obj("in/empty", size=0),
        obj("in/empty.torrent"),  # a torrent of a skipped object: an orphan, not a source
        obj("in/cold", storage_class="GLACIER"),
        obj("in/deep", storage_class="DEEP_ARCHIVE"),
        obj("in/ia", storage_class="STANDARD_IA"),
        obj("in/huge", size=101),
        obj("in/" + "k" * 1020),
        obj("out/x"),
    )
    decided = plan(items, settings=settings)
    reasons = {key: item.reason for key, item in decided.items() if item.action == "skip"}
    assert reasons == {
        "in/": SkipReason.DIRECTORY_MARKER,
        "in/empty": SkipReason.EMPTY,
        "in/cold": SkipReason.ARCHIVED,
        "in/deep": SkipReason.ARCHIVED,
        "in/huge": SkipReason.TOO_LARGE,
        "in/" + "k" * 1020: SkipReason.KEY_TOO_LONG,
        "out/x": SkipReason.OUTSIDE_SCOPE,
    }
    assert decided["in/ia"].action == "missing"


def test_state_round_trips_through_json_mid_walk() -> None:
    rng = random.Random(7)
    keys = sorted(
        {"".join(rng.choice("ab.-/é") for _ in range(rng.randint(1, 6))) for _ in range(400)}
    )
    items: list[ListedObject] = []
    for index, key in enumerate(keys):
        if key.endswith(".torrent"):
            continue
        items.append(obj(key, at=index))
        if rng.random() < 0.5:
            items.append(obj(key + ".torrent", at=index + rng.choice((-1, 0, 1))))
    items = listing(*items)
    expected = plan(items)

    decided: list[PlannedObject] = []
    planner = BackfillPlanner(SETTINGS, BUCKET)
    for start in range(0, len(items), 7):
        decided += planner.feed(items[start : start + 7])
        state = json.loads(json.dumps(planner.state()))
        planner = BackfillPlanner.restore(SETTINGS, BUCKET, state)
    decided += planner.finish()

    assert {item.key: item for item in decided} == expected
    assert len(decided) == len(expected)
    assert planner.listed == len(expected)
    assert {"fresh", "stale", "missing"} <= {item.action for item in decided}


def test_out_of_order_listing_is_refused() -> None:
    planner = BackfillPlanner(SETTINGS, BUCKET)
    planner.feed([obj("b")])
    with pytest.raises(ValueError, match="out of order"):
        planner.feed([obj("a")])


def test_restore_refuses_unknown_state() -> None:
    with pytest.raises(ValueError):
        BackfillPlanner.restore(SETTINGS, BUCKET, {"version": 99})


def test_twenty_thousand_objects_half_fresh() -> None:
    items: list[ListedObject] = []
    for number in range(20_000):
        key = f"data/{number:06d}.bin"
        items.append(obj(key, at=number))
        if number % 2:
            items.append(obj(key + ".torrent", at=number + 1))
    decided = plan(listing(*items), page_size=1000)
    counts = {action: 0 for action in ("fresh", "missing", "stale", "skip")}
    for item in decided.values():
        counts[item.action] += 1
    assert counts == {"fresh": 10_000, "missing": 10_000, "stale": 0, "skip": 0}


def test_a_chain_of_extending_keys_holds_at_most_max_pending_objects() -> None:
    """`k`, `k-`, `k--`, ...: every torrent sorts after the whole chain, so all would be held."""
    from s3torrent.backfill.planner import MAX_PENDING
    from s3torrent.messages import BackfillMessage

    # About the costliest keys a continuation can carry: ~1,000 bytes, mostly 4-byte
    # characters, each 12 bytes once JSON escapes it (queue bodies are ASCII); `<key>.torrent`
    # still fits S3's 1,024 bytes.
    stem = "\U0001f600" * 200
    chain = [stem + "-" * n for n in range(3 * MAX_PENDING)]
    etag = '"' + "f" * 32 + '-10000"'  # a multipart ETag, the longest kind
    items = [
        dataclasses.replace(item, etag=etag)
        for item in listing(
            *[obj(key, at=0) for key in chain],
            *[obj(key + ".torrent", at=0) for key in chain],  # every one of them fresh
        )
    ]
    planner = BackfillPlanner(SETTINGS, BUCKET)
    decided: list[PlannedObject] = []
    largest = 0
    for start in range(0, len(items), 10):
        decided += planner.feed(items[start : start + 10])
        assert planner.pending <= MAX_PENDING
        message = BackfillMessage(
            backfill_id="b" * 128,
            bucket=BUCKET,
            step=99,
            planner_state=planner.state(),
            continuation_token="t" * 1024,
            start_after=items[start].key,
        )
        largest = max(largest, len(message.to_body().encode()))
    decided += planner.finish()
    print(f"\nlargest continuation: {largest} bytes")
    assert largest < 256 * 1024, f"a continuation of {largest} bytes does not fit SQS"
    by_key = {item.key: item.action for item in decided}
    assert sorted(by_key) == sorted(chain), "every object decided exactly once"
    assert len(decided) == len(chain)
    # Held ones pair with their torrents; the ones let go early are "missing" (their jobs
    # will find the fresh torrent), never "stale" or "skip".
    assert set(by_key.values()) == {"fresh", "missing"}
    assert list(by_key.values()).count("fresh") == MAX_PENDING

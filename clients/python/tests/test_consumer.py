"""The durable consumer against a real nats-server: exactly-once effect
with SQLite, retries with backoff, dead letters with the Rust runtime's
headers, bad input, graceful stop."""

from __future__ import annotations

import asyncio

from backbone_client import (
    Consumer, ConsumerConfig, JetStreamPublisher, Permanent, SqliteStore, Transient, events,
)
from backbone_client import consumer as dlq
from conftest import event_stream, run


def followed(follower: str) -> events.UserFollowed:
    return events.UserFollowed(follower_id=follower, followee_id="u-42")


async def run_until(consumer: Consumer, done, timeout: float = 20.0) -> None:
    """Runs ``consumer`` until ``done()`` holds, then stops it."""
    task = asyncio.create_task(consumer.run())
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert not task.done(), task.exception()
        assert asyncio.get_running_loop().time() < deadline, consumer.counts
        await asyncio.sleep(0.05)
    consumer.stop()
    await asyncio.wait_for(task, 10)


async def letters(js) -> list:
    """Every message of the DEADLETTER stream, in order."""
    info = await js.stream_info(dlq.DEAD_LETTER_STREAM)
    return [await js.get_msg(dlq.DEAD_LETTER_STREAM, seq)
            for seq in range(info.state.first_seq, info.state.last_seq + 1)]


def fast(durable: str, **overrides) -> ConsumerConfig:
    return ConsumerConfig(durable=durable, backoff_base=0.05, backoff_max=0.2, fetch_wait=0.2,
                          **overrides)


def test_a_copy_outside_the_duplicate_window_is_applied_once(nats_url, tmp_path):
    async def scenario():
        nc = await event_stream(nats_url, duplicate_window=0.5)
        js = nc.jetstream()
        publisher = JetStreamPublisher(js, source="social-api")
        first = publisher.envelope(followed("u-1"))
        await publisher.publish_envelope(first)
        await asyncio.sleep(1.0)
        copy = await publisher.publish_envelope(first)
        await publisher.publish(followed("u-2"))
        store = SqliteStore(tmp_path / "notifications.db")
        store.db.execute("CREATE TABLE followers (followee TEXT, follower TEXT)")

        async def on_followed(event):
            event.db.execute("INSERT INTO followers VALUES (?, ?)",
                             (event.message.followee_id, event.message.follower_id))

        consumer = Consumer(js, fast("notifications"), {"user.followed": on_followed}, store=store)
        await run_until(consumer, lambda: consumer.counts["applied"] + consumer.counts["skipped"] == 3)
        rows = store.db.execute("SELECT follower FROM followers ORDER BY follower").fetchall()
        await nc.close()
        return copy, consumer.counts, rows

    copy, counts, rows = run(scenario())
    assert not copy.duplicate, "stored again: outside the window"
    assert counts["applied"] == 2 and counts["skipped"] == 1
    assert rows == [("u-1",), ("u-2",)]


def test_transient_failures_are_retried_then_dead_lettered(nats_url):
    async def scenario():
        nc = await event_stream(nats_url)
        js = nc.jetstream()
        publisher = JetStreamPublisher(js, source="social-api")
        flaky = await publisher.publish(followed("u-1"))
        doomed = await publisher.publish(followed("u-9"))
        attempts = {"u-1": 0, "u-9": 0}

        async def on_followed(event):
            attempts[event.message.follower_id] += 1
            if event.message.follower_id == "u-9" or attempts["u-1"] < 2:
                raise Transient("the feed database is down")

        consumer = Consumer(js, fast("feed", max_deliver=3), {"user.followed": on_followed})
        await run_until(consumer, lambda: consumer.counts["dead_lettered"] == 1
                        and consumer.counts["applied"] == 1)
        stored = await letters(js)
        await nc.close()
        return flaky, doomed, attempts, stored

    flaky, doomed, attempts, stored = run(scenario())
    assert attempts == {"u-1": 2, "u-9": 3}
    (letter,) = stored
    assert letter.subject == f"deadletter.feed.{doomed.subject}"
    headers = letter.headers
    assert headers[dlq.DLQ_CONSUMER] == "feed"
    assert headers[dlq.DLQ_STREAM] == "EVENTS"
    assert headers[dlq.DLQ_SUBJECT] == doomed.subject
    assert headers[dlq.DLQ_SEQUENCE] == str(doomed.seq)
    assert headers[dlq.DLQ_DELIVERIES] == "3"
    assert headers[dlq.DLQ_ERROR].startswith("gave up after 3 deliveries")
    assert headers[dlq.DLQ_MSG_ID] == doomed.id
    assert headers["Nats-Msg-Id"] == f"feed:{doomed.seq}"
    assert headers["ce-id"] == doomed.id, "the original headers are kept"


def test_permanent_failures_and_bad_messages_are_dead_lettered_at_once(nats_url):
    async def scenario():
        nc = await event_stream(nats_url)
        js = nc.jetstream()
        publisher = JetStreamPublisher(js, source="social-api")
        await js.publish("events.user.followed.u-3", b"\xff not an event")
        await publisher.publish(followed("u-4"))
        await publisher.publish(followed("u-5"))

        async def on_followed(event):
            if event.message.follower_id == "u-4":
                raise Permanent("u-4 is blocked")

        consumer = Consumer(js, fast("feed"), {"user.followed": on_followed})
        await run_until(consumer, lambda: consumer.counts["dead_lettered"] == 2
                        and consumer.counts["applied"] == 1)
        stored = await letters(js)
        await nc.close()
        return stored

    junk, blocked = run(scenario())
    assert junk.data == b"\xff not an event"
    assert junk.headers[dlq.DLQ_ERROR].startswith("undecodable event: MissingHeader")
    assert blocked.headers[dlq.DLQ_ERROR] == "u-4 is blocked"
    assert blocked.headers[dlq.DLQ_DELIVERIES] == "1"


def test_a_stopped_consumer_goes_on_where_it_stopped(nats_url, tmp_path):
    async def scenario():
        nc = await event_stream(nats_url)
        js = nc.jetstream()
        publisher = JetStreamPublisher(js, source="social-api")
        for n in range(5):
            await publisher.publish(followed(f"u-{n}"))
        seen = []

        async def on_followed(event):
            seen.append(event.seq)

        store = SqliteStore(tmp_path / "feed.db")
        first = Consumer(js, fast("feed", batch_size=2), {"user.followed": on_followed}, store=store)
        await run_until(first, lambda: len(seen) >= 2)
        for n in range(5, 8):
            await publisher.publish(followed(f"u-{n}"))
        second = Consumer(js, fast("feed"), {"user.followed": on_followed}, store=store)
        await run_until(second, lambda: len(set(seen)) == 8)
        await nc.close()
        return seen

    seen = run(scenario())
    assert sorted(set(seen)) == list(range(1, 9))
    assert len(seen) == 8, "nothing applied twice"


def test_a_failing_event_undoes_only_its_own_writes(nats_url, tmp_path):
    async def scenario():
        nc = await event_stream(nats_url)
        js = nc.jetstream()
        publisher = JetStreamPublisher(js, source="social-api")
        for follower in ("u-1", "u-bad", "u-2"):
            await publisher.publish(followed(follower))
        store = SqliteStore(tmp_path / "feed.db")
        store.db.execute("CREATE TABLE followers (follower TEXT)")

        async def on_followed(event):
            event.db.execute("INSERT INTO followers VALUES (?)", (event.message.follower_id,))
            if event.message.follower_id == "u-bad":
                raise Permanent("written, then refused")

        consumer = Consumer(js, fast("feed"), {"user.followed": on_followed}, store=store)
        await run_until(consumer, lambda: consumer.counts["applied"] == 2
                        and consumer.counts["dead_lettered"] == 1)
        rows = store.db.execute("SELECT follower FROM followers ORDER BY follower").fetchall()
        await nc.close()
        return rows

    assert run(scenario()) == [("u-1",), ("u-2",)]

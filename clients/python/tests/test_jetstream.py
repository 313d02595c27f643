"""Publishing to a real nats-server: receipts, duplicates, the blocking
wrapper, and every failure with its kind."""

from __future__ import annotations

import nats
import pytest

from backbone_client import JetStreamPublisher, PublishError, WireError, events
from backbone_client import wire as be
from backbone_client.sync import SyncJetStreamPublisher
from conftest import event_stream, free_port, run


def followed(follower: str = "u-1") -> events.UserFollowed:
    return events.UserFollowed(follower_id=follower, followee_id="u-2")


def test_a_published_event_is_stored_as_the_contract_says(nats_url):
    async def scenario():
        nc = await event_stream(nats_url)
        publisher = JetStreamPublisher(nc.jetstream(), source="social-api")
        envelope = publisher.envelope(followed(), correlation_id="req-1")
        receipt = await publisher.publish_envelope(envelope)
        again = await publisher.publish_envelope(envelope)
        stored = await nc.jetstream().get_msg("EVENTS", receipt.seq)
        await nc.close()
        return envelope, receipt, again, stored

    envelope, receipt, again, stored = run(scenario())
    assert (receipt.stream, receipt.seq, receipt.duplicate) == ("EVENTS", 1, False)
    assert receipt.subject == "events.user.followed.u-1"
    assert (again.seq, again.duplicate) == (1, True)
    decoded = be.Envelope.decode(be.registry(), stored.subject, stored.headers.items(), stored.data)
    assert decoded == envelope
    assert decoded.correlation_id == "req-1"


def test_a_bad_key_is_refused_before_sending(nats_url):
    async def scenario():
        nc = await event_stream(nats_url)
        publisher = JetStreamPublisher(nc.jetstream(), source="social-api")
        try:
            with pytest.raises(WireError) as caught:
                await publisher.publish(followed("u.1"))
            return caught.value.kind
        finally:
            await nc.close()

    assert run(scenario()) == "InvalidKey"


def test_no_stream_and_a_wrong_last_sequence_have_their_kinds(nats_url):
    async def scenario():
        nc = await nats.connect(nats_url)
        publisher = JetStreamPublisher(nc.jetstream(), source="social-api", timeout=2)
        kinds = []
        with pytest.raises(PublishError) as caught:
            await publisher.publish(followed())
        kinds.append(caught.value.kind)
        await nc.jetstream().add_stream(name="EVENTS", subjects=["events.>"])
        await publisher.publish(followed(), expected_last_subject_seq=0)
        with pytest.raises(PublishError) as caught:
            await publisher.publish(followed(), expected_last_subject_seq=0)
        kinds.append(caught.value.kind)
        await nc.close()
        return kinds

    assert run(scenario()) == ["NoStream", "WrongLastSequence"]


def test_the_blocking_publisher_works_without_an_event_loop(nats_url):
    run(event_stream(nats_url))
    with SyncJetStreamPublisher(nats_url, source="whatsapp-bot") as publisher:
        payment = events.PaymentReceived(payment_id="pay-1", user_id="u-42", amount_minor=990,
                                         currency="BRL")
        first = publisher.publish(payment)
        second = publisher.publish(payment)
    assert (first.seq, second.seq) == (1, 2)
    assert first.subject.startswith("events.payment.received.")


def test_an_unreachable_broker_is_broker_unavailable():
    with pytest.raises(PublishError) as caught:
        SyncJetStreamPublisher(f"nats://127.0.0.1:{free_port()}", source="x", timeout=1)
    assert caught.value.kind == "BrokerUnavailable"
    assert caught.value.is_transient

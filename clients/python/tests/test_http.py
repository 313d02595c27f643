"""Publishing through a real Backbone server's HTTP API: receipts,
duplicates, tokens and scopes, and an unreachable server, each by kind."""

from __future__ import annotations

import hashlib

import pytest

from backbone_client import HttpPublisher, PublishError, events
from conftest import free_port, run

TOKEN = "social-api-secret"


def followed(follower: str = "u-1") -> events.UserFollowed:
    return events.UserFollowed(follower_id=follower, followee_id="u-2")


def test_an_event_published_over_http_is_stored_once(backbone_server):
    url = backbone_server()
    publisher = HttpPublisher(url, source="social-api")
    envelope = publisher.envelope(followed(), traceparent=None)
    first = publisher.publish_envelope(envelope)
    again = publisher.publish_envelope(envelope)
    other = run(publisher.publish_async(followed("u-3")))
    assert (first.seq, first.duplicate, first.stream) == (1, False, "EVENTS")
    assert first.id == envelope.id and first.subject == "events.user.followed.u-1"
    assert (again.seq, again.duplicate) == (1, True)
    assert (other.seq, other.duplicate) == (2, False)


def test_tokens_and_scopes_are_enforced_by_kind(backbone_server):
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    url = backbone_server(
        f'[[tokens]]\nname = "social-api"\nsha256 = "{digest}"\npublish = ["user.*"]\n'
    )
    kinds = []
    for token, message in [
        (None, followed()),
        ("wrong", followed()),
        (TOKEN, events.PaymentReceived(payment_id="p-1", user_id="u-1", amount_minor=1,
                                       currency="USD")),
    ]:
        with pytest.raises(PublishError) as caught:
            HttpPublisher(url, source="social-api", token=token).publish(message)
        kinds.append((caught.value.kind, caught.value.status))
    assert kinds == [("Unauthorized", 401), ("Unauthorized", 401), ("Forbidden", 403)]
    receipt = HttpPublisher(url, source="social-api", token=TOKEN).publish(followed())
    assert receipt.seq == 1


def test_an_oversized_event_and_an_unreachable_server_have_their_kinds(backbone_server):
    url = backbone_server(http="max_body_bytes = 1024")
    big = events.MessageReceived(conversation_id="c-1", sender_user_id="u-1", text="x" * 10_000)
    with pytest.raises(PublishError) as caught:
        HttpPublisher(url, source="chat").publish(big)
    assert (caught.value.kind, caught.value.status) == ("PayloadTooLarge", 413)
    with pytest.raises(PublishError) as caught:
        HttpPublisher(f"http://127.0.0.1:{free_port()}", source="chat", timeout=2).publish(followed())
    assert (caught.value.kind, caught.value.status) == ("BrokerUnavailable", None)
    assert caught.value.is_transient

"""Sample events in proto3 JSON, one per event type.

They carry the same field values as the Rust crate's
``backbone_schemas::sample`` module, so the interop test can compare what
Python publishes with the Rust samples field by field.
"""

SAMPLE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

_SHA_ORIGINAL = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_SHA_PROCESSED = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

SAMPLES = {
    "user.registered": {
        "userId": "u-42",
        "handle": "ana_souza",
        "displayName": "Ana Souza \U0001F33B",
        "email": "ana@example.com",
        "locale": "pt-BR",
        "channel": "SIGNUP_CHANNEL_WHATSAPP",
        "referredByUserId": "u-7",
        "registeredAt": "2025-06-01T12:00:00Z",
    },
    "user.followed": {
        "followerId": "u-42",
        "followeeId": "u-7",
        "followedAt": "2025-06-01T12:01:00Z",
    },
    "user.unfollowed": {
        "followerId": "u-42",
        "followeeId": "u-7",
        "unfollowedAt": "2025-06-01T12:02:00Z",
    },
    "user.presence_changed": {
        "userId": "u-42",
        "status": "PRESENCE_STATUS_ONLINE",
        "changedAt": "2025-06-01T12:02:30Z",
    },
    "message.sent": {
        "recipientId": "u-42",
        "messageId": "dm-01JX9A",
        "senderId": "u-7",
        "text": "are you coming tonight?",
        "sentAt": "2025-06-01T12:03:01Z",
    },
    "message.delivered": {
        "recipientId": "u-42",
        "messageId": "dm-01JX9A",
        "deliveredAt": "2025-06-01T12:03:02Z",
    },
    "message.received": {
        "conversationId": "c-7f3a9",
        "providerMessageId": "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMEE4",
        "channel": "CHANNEL_WHATSAPP",
        "senderUserId": "u-42",
        "senderAddress": "+5511987654321",
        "text": "Ol\u00e1! Can you make me look like a \"pirate\"? "
        "\U0001F3F4\u200D\u2620\uFE0F",
        "media": [
            {
                "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=991",
                "contentType": "image/jpeg",
                "sizeBytes": "482113",
                "sha256": _SHA_ORIGINAL,
            }
        ],
        "receivedAt": "2025-06-01T12:03:00Z",
    },
    "image.processed": {
        "imageId": "img-01JWM3R2",
        "userId": "u-42",
        "original": {
            "blobKey": "uploads/u-42/img-01JWM3R2.jpg",
            "contentType": "image/jpeg",
            "sizeBytes": "482113",
            "sha256": _SHA_ORIGINAL,
        },
        "processed": {
            "blobKey": "images/u-42/img-01JWM3R2.webp",
            "contentType": "image/webp",
            "sizeBytes": "88406",
            "sha256": _SHA_PROCESSED,
        },
        "widthPx": 1024,
        "heightPx": 1024,
        "pipeline": "face-crop@3",
        "durationMs": 1840,
        "processedAt": "2025-06-01T12:03:04Z",
    },
    "pack.images_updated": {
        "packId": "pack-3c1",
        "userId": "u-42",
        "revision": "2",
        "imageIds": ["img-01JWM1A0", "img-01JWM3R2"],
        "addedImageIds": ["img-01JWM3R2"],
        "updatedAt": "2025-06-01T12:03:05Z",
    },
    "tune.created": {
        "tuneId": "tune-9k2",
        "userId": "u-42",
        "packId": "pack-3c1",
        "title": "Ana as a pirate",
        "baseModel": "sdxl-1.0",
        "className": "woman",
        "imageIds": ["img-01JWM1A0", "img-01JWM3R2"],
        "createdAt": "2025-06-01T12:04:00Z",
    },
    "payment.received": {
        "paymentId": "pay-01JWM3Q8Z4",
        "userId": "u-42",
        "amountMinor": "1299",
        "currency": "USD",
        "provider": "stripe",
        "providerPaymentId": "pi_3PxY7a2eZvKYlo2C1a2b3c4d",
        "productSku": "tune-pack-20",
        "receivedAt": "2025-06-01T12:03:50Z",
    },
    "payment.refunded": {
        "refundId": "ref-01JWM9K1",
        "paymentId": "pay-01JWM3Q8Z4",
        "userId": "u-42",
        "amountMinor": "500",
        "currency": "USD",
        "reason": "requested_by_customer",
        "refundedAt": "2025-06-01T13:00:00Z",
    },
}

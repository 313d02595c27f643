import datetime

from backbone_client._gen.backbone.common.v1 import media_pb2 as _media_pb2
from backbone_client._gen.backbone import options_pb2 as _options_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_WHATSAPP: _ClassVar[Channel]
    CHANNEL_TELEGRAM: _ClassVar[Channel]
    CHANNEL_WEB: _ClassVar[Channel]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_WHATSAPP: Channel
CHANNEL_TELEGRAM: Channel
CHANNEL_WEB: Channel

class MessageReceived(_message.Message):
    __slots__ = ("conversation_id", "provider_message_id", "channel", "sender_user_id", "sender_address", "text", "media", "reply_to_provider_message_id", "received_at")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SENDER_USER_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_PROVIDER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    provider_message_id: str
    channel: Channel
    sender_user_id: str
    sender_address: str
    text: str
    media: _containers.RepeatedCompositeFieldContainer[_media_pb2.MediaRef]
    reply_to_provider_message_id: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, conversation_id: _Optional[str] = ..., provider_message_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., sender_user_id: _Optional[str] = ..., sender_address: _Optional[str] = ..., text: _Optional[str] = ..., media: _Optional[_Iterable[_Union[_media_pb2.MediaRef, _Mapping]]] = ..., reply_to_provider_message_id: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DirectMessageSent(_message.Message):
    __slots__ = ("recipient_id", "message_id", "sender_id", "text", "sent_at")
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    recipient_id: str
    message_id: str
    sender_id: str
    text: str
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, recipient_id: _Optional[str] = ..., message_id: _Optional[str] = ..., sender_id: _Optional[str] = ..., text: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DirectMessageDelivered(_message.Message):
    __slots__ = ("recipient_id", "message_id", "delivered_at")
    RECIPIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    recipient_id: str
    message_id: str
    delivered_at: _timestamp_pb2.Timestamp
    def __init__(self, recipient_id: _Optional[str] = ..., message_id: _Optional[str] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

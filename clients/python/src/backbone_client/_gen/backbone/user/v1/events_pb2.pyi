import datetime

from backbone_client._gen.backbone import options_pb2 as _options_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignupChannel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNUP_CHANNEL_UNSPECIFIED: _ClassVar[SignupChannel]
    SIGNUP_CHANNEL_WEB: _ClassVar[SignupChannel]
    SIGNUP_CHANNEL_IOS: _ClassVar[SignupChannel]
    SIGNUP_CHANNEL_ANDROID: _ClassVar[SignupChannel]
    SIGNUP_CHANNEL_WHATSAPP: _ClassVar[SignupChannel]

class PresenceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRESENCE_STATUS_UNSPECIFIED: _ClassVar[PresenceStatus]
    PRESENCE_STATUS_ONLINE: _ClassVar[PresenceStatus]
    PRESENCE_STATUS_AWAY: _ClassVar[PresenceStatus]
    PRESENCE_STATUS_OFFLINE: _ClassVar[PresenceStatus]
SIGNUP_CHANNEL_UNSPECIFIED: SignupChannel
SIGNUP_CHANNEL_WEB: SignupChannel
SIGNUP_CHANNEL_IOS: SignupChannel
SIGNUP_CHANNEL_ANDROID: SignupChannel
SIGNUP_CHANNEL_WHATSAPP: SignupChannel
PRESENCE_STATUS_UNSPECIFIED: PresenceStatus
PRESENCE_STATUS_ONLINE: PresenceStatus
PRESENCE_STATUS_AWAY: PresenceStatus
PRESENCE_STATUS_OFFLINE: PresenceStatus

class UserRegistered(_message.Message):
    __slots__ = ("user_id", "handle", "display_name", "email", "locale", "channel", "referred_by_user_id", "registered_at")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REFERRED_BY_USER_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    handle: str
    display_name: str
    email: str
    locale: str
    channel: SignupChannel
    referred_by_user_id: str
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., handle: _Optional[str] = ..., display_name: _Optional[str] = ..., email: _Optional[str] = ..., locale: _Optional[str] = ..., channel: _Optional[_Union[SignupChannel, str]] = ..., referred_by_user_id: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UserFollowed(_message.Message):
    __slots__ = ("follower_id", "followee_id", "followed_at")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWED_AT_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    followee_id: str
    followed_at: _timestamp_pb2.Timestamp
    def __init__(self, follower_id: _Optional[str] = ..., followee_id: _Optional[str] = ..., followed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UserUnfollowed(_message.Message):
    __slots__ = ("follower_id", "followee_id", "unfollowed_at")
    FOLLOWER_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOWEE_ID_FIELD_NUMBER: _ClassVar[int]
    UNFOLLOWED_AT_FIELD_NUMBER: _ClassVar[int]
    follower_id: str
    followee_id: str
    unfollowed_at: _timestamp_pb2.Timestamp
    def __init__(self, follower_id: _Optional[str] = ..., followee_id: _Optional[str] = ..., unfollowed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UserPresenceChanged(_message.Message):
    __slots__ = ("user_id", "status", "changed_at")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    status: PresenceStatus
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, user_id: _Optional[str] = ..., status: _Optional[_Union[PresenceStatus, str]] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

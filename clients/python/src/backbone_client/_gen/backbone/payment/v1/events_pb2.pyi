import datetime

from backbone_client._gen.backbone import options_pb2 as _options_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentReceived(_message.Message):
    __slots__ = ("payment_id", "user_id", "amount_minor", "currency", "provider", "provider_payment_id", "product_sku", "received_at")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_SKU_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    user_id: str
    amount_minor: int
    currency: str
    provider: str
    provider_payment_id: str
    product_sku: str
    received_at: _timestamp_pb2.Timestamp
    def __init__(self, payment_id: _Optional[str] = ..., user_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., provider: _Optional[str] = ..., provider_payment_id: _Optional[str] = ..., product_sku: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PaymentRefunded(_message.Message):
    __slots__ = ("refund_id", "payment_id", "user_id", "amount_minor", "currency", "reason", "refunded_at")
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_AT_FIELD_NUMBER: _ClassVar[int]
    refund_id: str
    payment_id: str
    user_id: str
    amount_minor: int
    currency: str
    reason: str
    refunded_at: _timestamp_pb2.Timestamp
    def __init__(self, refund_id: _Optional[str] = ..., payment_id: _Optional[str] = ..., user_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., reason: _Optional[str] = ..., refunded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

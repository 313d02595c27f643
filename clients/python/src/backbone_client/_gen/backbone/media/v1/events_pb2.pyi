import datetime

from backbone_client._gen.backbone.common.v1 import media_pb2 as _media_pb2
from backbone_client._gen.backbone import options_pb2 as _options_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageProcessed(_message.Message):
    __slots__ = ("image_id", "user_id", "original", "processed", "width_px", "height_px", "pipeline", "duration_ms", "processed_at")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    user_id: str
    original: _media_pb2.MediaRef
    processed: _media_pb2.MediaRef
    width_px: int
    height_px: int
    pipeline: str
    duration_ms: int
    processed_at: _timestamp_pb2.Timestamp
    def __init__(self, image_id: _Optional[str] = ..., user_id: _Optional[str] = ..., original: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., processed: _Optional[_Union[_media_pb2.MediaRef, _Mapping]] = ..., width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., pipeline: _Optional[str] = ..., duration_ms: _Optional[int] = ..., processed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TuneCreated(_message.Message):
    __slots__ = ("tune_id", "user_id", "pack_id", "title", "base_model", "class_name", "image_ids", "created_at")
    TUNE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PACK_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    tune_id: str
    user_id: str
    pack_id: str
    title: str
    base_model: str
    class_name: str
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, tune_id: _Optional[str] = ..., user_id: _Optional[str] = ..., pack_id: _Optional[str] = ..., title: _Optional[str] = ..., base_model: _Optional[str] = ..., class_name: _Optional[str] = ..., image_ids: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PackImagesUpdated(_message.Message):
    __slots__ = ("pack_id", "user_id", "revision", "image_ids", "added_image_ids", "removed_image_ids", "updated_at")
    PACK_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ADDED_IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    pack_id: str
    user_id: str
    revision: int
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    added_image_ids: _containers.RepeatedScalarFieldContainer[str]
    removed_image_ids: _containers.RepeatedScalarFieldContainer[str]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, pack_id: _Optional[str] = ..., user_id: _Optional[str] = ..., revision: _Optional[int] = ..., image_ids: _Optional[_Iterable[str]] = ..., added_image_ids: _Optional[_Iterable[str]] = ..., removed_image_ids: _Optional[_Iterable[str]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

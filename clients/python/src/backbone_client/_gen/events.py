"""Generated from schemas/proto by clients/python/scripts/generate.py: do not edit."""

from backbone_client._gen.backbone.common.v1.media_pb2 import MediaRef as MediaRef
from backbone_client._gen.backbone.media.v1.events_pb2 import ImageProcessed as ImageProcessed
from backbone_client._gen.backbone.media.v1.events_pb2 import TuneCreated as TuneCreated
from backbone_client._gen.backbone.media.v1.events_pb2 import PackImagesUpdated as PackImagesUpdated
from backbone_client._gen.backbone.messaging.v1.events_pb2 import Channel as Channel
from backbone_client._gen.backbone.messaging.v1.events_pb2 import MessageReceived as MessageReceived
from backbone_client._gen.backbone.messaging.v1.events_pb2 import DirectMessageSent as DirectMessageSent
from backbone_client._gen.backbone.messaging.v1.events_pb2 import DirectMessageDelivered as DirectMessageDelivered
from backbone_client._gen.backbone.options_pb2 import EventOptions as EventOptions
from backbone_client._gen.backbone.payment.v1.events_pb2 import PaymentReceived as PaymentReceived
from backbone_client._gen.backbone.payment.v1.events_pb2 import PaymentRefunded as PaymentRefunded
from backbone_client._gen.backbone.user.v1.events_pb2 import SignupChannel as SignupChannel
from backbone_client._gen.backbone.user.v1.events_pb2 import PresenceStatus as PresenceStatus
from backbone_client._gen.backbone.user.v1.events_pb2 import UserRegistered as UserRegistered
from backbone_client._gen.backbone.user.v1.events_pb2 import UserFollowed as UserFollowed
from backbone_client._gen.backbone.user.v1.events_pb2 import UserUnfollowed as UserUnfollowed
from backbone_client._gen.backbone.user.v1.events_pb2 import UserPresenceChanged as UserPresenceChanged

__all__ = [
    'MediaRef',
    'ImageProcessed',
    'TuneCreated',
    'PackImagesUpdated',
    'Channel',
    'MessageReceived',
    'DirectMessageSent',
    'DirectMessageDelivered',
    'EventOptions',
    'PaymentReceived',
    'PaymentRefunded',
    'SignupChannel',
    'PresenceStatus',
    'UserRegistered',
    'UserFollowed',
    'UserUnfollowed',
    'UserPresenceChanged',
]

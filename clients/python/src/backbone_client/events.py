"""Every message and enum class of ``schemas/proto`` under one import::

    from backbone_client.events import PaymentReceived, UserFollowed

Generated into ``backbone_client._gen`` by ``scripts/generate.py``.
"""

from ._gen.events import *  # noqa: F401,F403 - the generated catalog
from ._gen.events import __all__  # noqa: F401

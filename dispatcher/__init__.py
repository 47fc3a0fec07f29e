"""The dispatcher: consumes push.requests and push.retries, sends to APNs and FCM over persistent
HTTP/2 connections, and writes one outcome per attempt to push.outcomes.

    clients = ProviderClients(AppRegistry.from_env(os.environ))
    dispatcher = Dispatcher(kafka=..., registry=..., topics=..., config=DispatcherConfig.from_env(),
                            sender=clients, receipt_token=signer.for_request)
    await dispatcher.run()          # until dispatcher.stop()

A provider's answer is data (:class:`SendResult`), classified by one table (:data:`RULES`) into an
:class:`Action`: accepted, retry, invalid or suspect token, reject, or configuration alert.
"""

from dispatcher._apns import ApnsClient
from dispatcher._apps import ApnsAppConfig, AppConfig, AppRegistry, FcmAppConfig
from dispatcher._config import DispatcherConfig
from dispatcher._fcm import FcmClient
from dispatcher._loop import Dispatcher
from dispatcher._providers import ProviderClients
from dispatcher._results import (
    RULES,
    Action,
    ApnsReason,
    FcmErrorCode,
    PushlineReason,
    SendResult,
    classify,
)
from dispatcher._transport import HttpxTransport, Transport, TransportError, TransportResponse

__all__ = [
    "RULES",
    "Action",
    "ApnsAppConfig",
    "ApnsClient",
    "ApnsReason",
    "AppConfig",
    "AppRegistry",
    "Dispatcher",
    "DispatcherConfig",
    "FcmAppConfig",
    "FcmClient",
    "FcmErrorCode",
    "HttpxTransport",
    "ProviderClients",
    "PushlineReason",
    "SendResult",
    "Transport",
    "TransportError",
    "TransportResponse",
    "classify",
]

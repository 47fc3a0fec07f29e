"""Device receipts and what follows from them.

- the receipts API (``pushline receipts-api``): devices POST signed receipt tokens; accepted
  receipts go to push.receipts;
- the reconciler (``pushline reconciler``): joins push.outcomes with push.receipts and publishes
  statuses, invalid tokens and fallback requests;
- the fallback sender (``pushline fallback-sender``): email over SMTP, SMS over a Twilio-shaped API.
"""

from receipts._api import create_app
from receipts._config import ReceiptsApiConfig
from receipts._fallback import FallbackSender, run_fallback_sender_service
from receipts._fallback_config import FallbackConfig
from receipts._reconciler import Reconciler, ReconcilerConfig
from receipts._reconciler_service import run_reconciler_service
from receipts._reconciler_state import PartitionState, Tracked
from receipts._service import (
    ReceiptsApiProcess,
    run_receipts_api,
    start_receipts_api_process,
)
from receipts._sink import KafkaReceiptSink, ReceiptSink

__all__ = [
    "FallbackConfig",
    "FallbackSender",
    "KafkaReceiptSink",
    "PartitionState",
    "ReceiptSink",
    "ReceiptsApiConfig",
    "ReceiptsApiProcess",
    "Reconciler",
    "ReconcilerConfig",
    "Tracked",
    "create_app",
    "run_fallback_sender_service",
    "run_receipts_api",
    "run_reconciler_service",
    "start_receipts_api_process",
]

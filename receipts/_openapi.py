"""The OpenAPI 3.1 description of the receipts API, served at ``GET /openapi.json``.

Written by hand, next to the code it describes: the API is small, and the error codes and batch
semantics are the part a client needs documented most.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_CODES", "openapi_document"]

#: Every ``error.code`` the API answers, with its HTTP status.
ERROR_CODES: dict[str, int] = {
    "malformed_json": 400,
    "invalid_content_length": 400,
    "forged_token": 401,
    "expired_token": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_request": 422,
    "invalid_field": 422,
    "invalid_kind": 422,
    "malformed_token": 422,
    "device_key_required": 422,
    "notification_mismatch": 422,
    "batch_too_large": 422,
    "invalid_batch": 422,
    "not_ready": 503,
    "unavailable": 503,
}


def _error_response(description: str, codes: list[str]) -> dict[str, Any]:
    return {
        "description": f"{description} `error.code`: {', '.join(f'`{c}`' for c in codes)}.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _probe(summary: str) -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
        "required": ["status"],
    }
    return {
        "get": {
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": body}}},
                "503": {
                    "description": "Not OK; `reason` says why.",
                    "content": {"application/json": {"schema": body}},
                },
            },
        }
    }


def openapi_document(*, max_body_bytes: int, batch_max: int) -> dict[str, Any]:
    """The document, with this server's limits filled in."""
    receipt: dict[str, Any] = {
        "type": "object",
        "required": ["token", "kind"],
        "properties": {
            "token": {
                "type": "string",
                "maxLength": 200,
                "description": "The receipt token from the push's custom data, unchanged.",
            },
            "kind": {"type": "string", "enum": ["DELIVERED", "OPENED"]},
            "device_key": {
                "type": "string",
                "maxLength": 4096,
                "description": "The device key (the push token, or the app's own device id). "
                "Required when the token does not embed it (answer `device_key_required`); "
                "checked against the token when it does.",
            },
            "notification_id": {
                "type": "string",
                "format": "uuid",
                "description": "Optional; when present it must be the token's notification.",
            },
            "device_time": {
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339 with an offset; the device clock at the event.",
            },
            "app_version": {"type": "string", "maxLength": 128},
            "os_version": {"type": "string", "maxLength": 128},
            "platform": {"type": "string", "enum": ["APNS", "FCM"]},
        },
        "description": "One receipt. Unknown properties are ignored, so newer apps can send more.",
    }
    batch: dict[str, Any] = {
        "type": "object",
        "required": ["receipts"],
        "properties": {
            "receipts": {
                "type": "array",
                "minItems": 1,
                "maxItems": batch_max,
                "items": {"$ref": "#/components/schemas/Receipt"},
            }
        },
        "description": "Several receipts, all or nothing: every item is checked first; if any is "
        "refused the answer is 422 `invalid_batch` listing each refused item, and none is "
        "recorded.",
    }
    error: dict[str, Any] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "The offending field, if one."},
                    "items": {
                        "type": "array",
                        "description": "For `invalid_batch`: the refused items.",
                        "items": {
                            "type": "object",
                            "required": ["index", "status", "code", "message"],
                            "properties": {
                                "index": {"type": "integer"},
                                "status": {"type": "integer"},
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    }
    accepted: dict[str, Any] = {
        "type": "object",
        "required": ["accepted", "duplicates"],
        "properties": {
            "accepted": {"type": "integer", "description": "Receipts accepted (all of them)."},
            "duplicates": {
                "type": "integer",
                "description": "How many of them this server had already recorded recently and "
                "did not record again.",
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pushline receipts API",
            "version": "1",
            "description": "Devices report that a push was delivered or opened, with the signed "
            "receipt token the push carried. A 202 means the receipt is stored in Kafka "
            "(push.receipts, acknowledged by the broker). Repeating a receipt is safe: the "
            "same (notification, kind) is answered 202 again and recorded once per server; the "
            "reconciler also ignores duplicates across servers.",
        },
        "paths": {
            "/v1/receipts": {
                "post": {
                    "operationId": "postReceipts",
                    "summary": "Record one receipt or a batch",
                    "parameters": [
                        {
                            "name": "traceparent",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "W3C trace context, copied to the Kafka record.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "description": f"At most {max_body_bytes} bytes.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Receipt"},
                                        {"$ref": "#/components/schemas/ReceiptBatch"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Recorded (acknowledged by the broker).",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Accepted"}
                                }
                            },
                        },
                        "400": _error_response(
                            "The body is not JSON.", ["malformed_json", "invalid_content_length"]
                        ),
                        "401": _error_response(
                            "The token is not genuine for this device, or has expired.",
                            ["forged_token", "expired_token"],
                        ),
                        "413": _error_response(
                            f"The body is larger than {max_body_bytes} bytes.", ["body_too_large"]
                        ),
                        "415": _error_response(
                            "Content-Type is not application/json.", ["unsupported_media_type"]
                        ),
                        "422": _error_response(
                            "The receipt cannot be accepted.",
                            [
                                "invalid_request",
                                "invalid_field",
                                "invalid_kind",
                                "malformed_token",
                                "device_key_required",
                                "notification_mismatch",
                                "batch_too_large",
                                "invalid_batch",
                            ],
                        ),
                        "503": {
                            **_error_response(
                                "Kafka is unavailable; retry after `Retry-After` seconds.",
                                ["not_ready", "unavailable"],
                            ),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 JSON"}},
                }
            },
            "/healthz": _probe("Liveness: 200 while the producer runs"),
            "/readyz": _probe(
                "Readiness: 200 once the broker answered and the schema is registered"
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Receipt": receipt,
                "ReceiptBatch": batch,
                "Accepted": accepted,
                "Error": error,
            }
        },
    }

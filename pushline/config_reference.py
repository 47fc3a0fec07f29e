"""The configuration reference, generated from the config classes themselves.

Every setting is an ``env_field`` with its variable, default and doc; this module renders them as
the Markdown tables in the README (``pushline config reference``), and a test keeps the README
equal to what it renders, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

__all__ = ["CONFIG_CLASSES", "render_reference"]


def _classes() -> list[tuple[str, type]]:
    # Imported here: each lives in its own layer, and `pushline` must stay light to import.
    from dispatcher._config import DispatcherConfig  # noqa: PLC0415
    from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig  # noqa: PLC0415
    from pushline.ops import OpsConfig  # noqa: PLC0415
    from receipts._config import ReceiptsApiConfig  # noqa: PLC0415
    from receipts._fallback_config import FallbackConfig  # noqa: PLC0415
    from receipts._reconciler import ReconcilerConfig  # noqa: PLC0415
    from schemas.receipt_token import ReceiptTokenConfig  # noqa: PLC0415

    return [
        ("Kafka", KafkaConfig),
        ("Schema Registry", SchemaRegistryConfig),
        ("Topics", TopicsConfig),
        ("Operations (every component)", OpsConfig),
        ("Receipt tokens (dispatcher and receipts API)", ReceiptTokenConfig),
        ("Dispatcher", DispatcherConfig),
        ("Reconciler", ReconcilerConfig),
        ("Receipts API", ReceiptsApiConfig),
        ("Fallback sender", FallbackConfig),
    ]


CONFIG_CLASSES = _classes


def _default(f: dataclasses.Field[object]) -> str:
    if f.metadata.get("secret"):
        return "— (secret)"
    if f.default is dataclasses.MISSING:
        return "required" if f.default_factory is dataclasses.MISSING else "—"
    if f.default is None or f.default == "":
        return "—"
    return f"`{f.default}`"


def _rows(cls: type) -> Iterator[str]:
    for f in dataclasses.fields(cls):
        env = f.metadata.get("env")
        if not env:
            continue
        names = " / ".join(f"`{n}`" for n in env.split(","))
        doc = " ".join(str(f.metadata.get("doc", "")).split()).replace("|", "\\|")
        yield f"| {names} | {_default(f)} | {doc} |"


def render_reference() -> str:
    """Markdown: one table per component, every environment variable with default and meaning."""
    out = []
    for title, cls in _classes():
        out += [f"#### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        out += list(_rows(cls))
        out.append("")
    return "\n".join(out).rstrip() + "\n"

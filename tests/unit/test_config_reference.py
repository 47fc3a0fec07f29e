"""The README's configuration reference is what the config classes say."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pushline.config_reference import CONFIG_CLASSES, render_reference

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def test_readme_reference_is_generated_from_the_code() -> None:
    text = README.read_text()
    section = text[text.index(START) + len(START) : text.index(END)]
    assert section == render_reference(), "run `pushline config reference` into the README"


def test_every_setting_has_a_variable_and_a_doc() -> None:
    for _, cls in CONFIG_CLASSES():
        for f in dataclasses.fields(cls):
            if "env" in f.metadata:
                assert f.metadata["doc"], f"{cls.__name__}.{f.name} has no doc"
                assert f.metadata["env"].startswith(
                    ("PUSHLINE_", "KAFKA_", "SCHEMA_", "SMTP_", "SMS_")
                )


def test_secret_defaults_are_never_printed() -> None:
    reference = render_reference()
    assert "PUSHLINE_KAFKA_SASL_PASSWORD` | — (secret)" in reference

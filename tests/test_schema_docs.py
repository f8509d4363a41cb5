"""schemas/messages.md is generated from schemas/messages.toml and must not drift from it."""

from recorder import schema_docs
from recorder.schema import schema_path


def test_messages_md_is_up_to_date():
    committed = schema_path().with_name("messages.md").read_text()
    assert committed == schema_docs.render(), "run: python -m recorder.schema_docs"


def test_every_message_and_decision_is_documented():
    text = schema_docs.render()
    from recorder.schema import load
    for spec in load().messages.values():
        assert f"{spec.id:#06x} {spec.name}" in text
    assert "## Decisions where the specification is silent" in text

"""README's command tables are generated from the command declarations and must match."""

from pathlib import Path

from lotsenbot.core.reference import END, START, default_reference, replace_block

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_command_reference_is_current() -> None:
    text = README.read_text("utf-8")
    assert START in text and END in text
    expected = replace_block(text, default_reference())
    assert text == expected, "README veraltet: `lotsenbot commands --update-readme` ausführen"


def test_reference_lists_every_visible_command_with_roles() -> None:
    from lotsenbot.app import default_features

    reference = default_reference()
    for feature in default_features():
        for command in feature.router.commands:
            if not command.hidden:
                assert f"`!{command.name}" in reference
    assert "| K |" in reference  # coordinator-only commands are marked

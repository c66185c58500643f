"""The engine's Markdown comments rendered for Jira: ADF documents (Cloud) and wiki markup (Data Center)."""

from __future__ import annotations

import datetime as dt

import pytest

from config.schema import Policy
from connector.jira.events import to_event
from connector.jira.format import blocks, escape_wiki, to_adf, to_wiki
from policies.engine import evaluate
from policies.models import PostComment
from tests.conftest import fixture_json

SAMPLE = (
    "### Next steps\n"
    "**Done:** the issue moved\n"
    "@dana please check `status/triage` and **`Closed`**.\n"
    "\n"
    "Still missing:\n"
    "- A plan\n"
    "  with the risks\n"
    "- An owner\n"
    "\n"
    "1. first\n"
    "2. second\n"
    "\n"
    "---\n"
)


def _text(text: str, *marks: str) -> dict[str, object]:
    node: dict[str, object] = {"type": "text", "text": text}
    if marks:
        node["marks"] = [{"type": mark} for mark in marks]
    return node


def test_markdown_becomes_an_adf_document_with_the_same_structure() -> None:
    assert to_adf(SAMPLE, {"dana": "5b10a2844c20165700ede21g"}) == {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "heading", "attrs": {"level": 3}, "content": [_text("Next steps")]},
            {
                "type": "paragraph",
                "content": [
                    _text("Done:", "strong"),
                    _text(" the issue moved"),
                    {"type": "hardBreak"},
                    {"type": "mention", "attrs": {"id": "5b10a2844c20165700ede21g", "text": "@dana"}},
                    _text(" please check "),
                    _text("status/triage", "code"),
                    _text(" and "),
                    _text("Closed", "code"),  # ADF allows the code mark only on its own
                    _text("."),
                ],
            },
            {"type": "paragraph", "content": [_text("Still missing:")]},
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {
                                "type": "paragraph",
                                "content": [_text("A plan"), {"type": "hardBreak"}, _text("with the risks")],
                            }
                        ],
                    },
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [_text("An owner")]}]},
                ],
            },
            {
                "type": "orderedList",
                "content": [
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [_text("first")]}]},
                    {"type": "listItem", "content": [{"type": "paragraph", "content": [_text("second")]}]},
                ],
            },
            {"type": "rule"},
        ],
    }


def test_markdown_becomes_wiki_markup_with_the_same_structure() -> None:
    assert to_wiki(SAMPLE, {"dana": "dana"}) == (
        "h3. Next steps\n"
        "\n"
        "*Done:* the issue moved\n"
        "[~dana] please check {{status/triage}} and *{{Closed}}*.\n"
        "\n"
        "Still missing:\n"
        "\n"
        "* A plan \\\\ with the risks\n"
        "* An owner\n"
        "\n"
        "# first\n"
        "# second\n"
        "\n"
        "----"
    )


def test_an_empty_body_is_still_a_valid_document() -> None:
    assert to_adf("") == {"type": "doc", "version": 1, "content": [{"type": "paragraph"}]}
    assert to_wiki("\n\n") == ""


def test_a_login_is_a_mention_only_as_a_whole_word() -> None:
    adf = to_adf("@dan and @dana.", {"dan": "A1"})
    assert adf["content"][0]["content"] == [
        {"type": "mention", "attrs": {"id": "A1", "text": "@dan"}},
        _text(" and @dana."),
    ]
    assert to_wiki("@dan and @dana.", {"dan": "dan"}) == "[~dan] and @dana."


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a *starred* word", "a \\*starred* word"),
        ("snake_case and _emphasis_", "snake_case and \\_emphasis_"),
        ("back-and-forth, not -struck-", "back-and-forth, not \\-struck-"),
        ("2+2 and +under+", "2+2 and \\+under+"),
        ("{code} [link|http://x] a|b", "\\{code} \\[link\\|http://x] a\\|b"),
        ("ok (x) (!) :) done", "ok \\(x) (\\!) \\:) done"),
        ("Thank you!", "Thank you!"),
        ("??cite??", "\\?\\?cite??"),
    ],
)
def test_text_is_escaped_only_where_wiki_markup_would_read_it_as_markup(text: str, shown: str) -> None:
    assert escape_wiki(text) == shown


def test_bold_touching_a_letter_uses_the_braced_form() -> None:
    assert to_wiki("and**bold**text") == "and{*}bold{*}text"
    assert to_wiki("**优先级 P2**:依据") == "*优先级 P2*:依据"


def test_a_list_right_after_a_line_of_text_is_its_own_block() -> None:
    assert [b.kind for b in blocks("Stages skipped:\n- Triage\n- Diagnosis\nFrom here")] == [
        "paragraph",
        "bullets",
    ]


def test_every_default_template_renders_in_both_locales(default_policy: Policy) -> None:
    """The engine's real comments, in English and Chinese, become documents without lost text."""
    payload = fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json")
    event, snapshot = to_event("format", payload)
    for locale in ("en", "zh-CN"):
        policy = default_policy.model_copy(update={"locale": locale})
        decision = evaluate(policy, event, snapshot, dt.datetime(2025, 3, 3, tzinfo=dt.UTC))
        (comment,) = [a for a in decision.actions if isinstance(a, PostComment)]
        words = [w for w in comment.body.replace("**", " ").replace("`", " ").split() if w not in ("-",)]
        adf = str(to_adf(comment.body))
        wiki = to_wiki(comment.body)
        assert all(w in adf for w in words if w != "@admin"), locale
        assert all(w.replace("*", "") in wiki.replace("\\", "") for w in words), locale

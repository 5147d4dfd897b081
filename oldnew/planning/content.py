"""Content checks: a scope or plan that parses but says nothing is a model-output failure.

A schema only checks shape: ``{"title": "x", "features": [{"id": "F1", "title": "x"}]}`` is a
valid Scope. These checks name what an answer that says nothing looks like, so the model is
asked again with the problem stated, and after that the failure escalates as the model's (never
as a question built from the placeholder text). They judge the answer as a whole: one terse
item in a real answer ("add", "docs") passes, and so does a real short scope ("a CLI that
prints hello").

Text "says nothing" when, with digits and punctuation taken out, it has no word of two letters
or more, or only placeholder words ("x", "tbd", "lorem ipsum", "feature 3", ...). The list is
short on purpose: a word that names real software ("todo", "notes", "item") is no placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel

from oldnew.schemas import Clarification, EpicTasks, Feature, Plan, PlannedTask, Scope, Split

PLACEHOLDER_WORDS = frozenset(
    {
        "xx",
        "xxx",
        "xxxx",
        "xyz",
        "tbd",
        "tba",
        "na",
        "none",
        "null",
        "nil",
        "undefined",
        "placeholder",
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "foo",
        "bar",
        "baz",
        "qux",
        "foobar",
        "asdf",
        "qwerty",
        "dummy",
        "untitled",
        "title",
        "description",
        "feature",
        "requirement",
        "something",
        "stuff",
        "project",
        "same",
        "etc",
    }
)
"""Words that, alone or only with each other, say nothing about what to build."""
_WORD = re.compile(r"[^\W\d_]{2,}")
_ALNUM = re.compile(r"[^\W_]{2,}|\d")
_EMPTY_DEFAULTS = frozenset(
    {"xx", "xxx", "xyz", "todo", "tbd", "tba", "placeholder", "lorem ipsum"}
)
"""A default needs a word or a number ("8080", "none" and "SQLite" are answers; "x" is not)."""


def says_nothing(text: str) -> bool:
    """Return whether ``text`` is empty, has no real word, or only placeholder words."""
    words = _WORD.findall(text.lower())
    return not words or all(w in PLACEHOLDER_WORDS for w in words)


def _key(item: Feature | PlannedTask) -> tuple[str, str]:
    return (" ".join(item.title.lower().split()), " ".join(item.description.lower().split()))


def _empty_items(what: str, items: Sequence[Feature | PlannedTask]) -> list[str]:
    """Problems of a list of requirements or tasks taken as a whole (empty when it has content)."""
    if not items:
        return []
    shown = ", ".join(f"{i.id} {i.title!r}" for i in items[:5])
    if all(says_nothing(f"{i.title} {i.description}") for i in items):
        return [
            f"no {what} says anything ({shown}): give each a title and description that say "
            "what the software must do, in the scope's own terms"
        ]
    if len(items) > 1 and len({_key(i) for i in items}) == 1:
        return [
            f"every {what} has the same title and description ({shown}): give each its own, "
            "or return one"
        ]
    return []


def scope_content_problems(scope: Scope) -> list[str]:
    """Return why ``scope`` says nothing (placeholder title or requirements), or []."""
    problems = []
    if says_nothing(scope.title):
        problems.append(
            f"the scope's title {scope.title!r} says nothing: name the project in a few words"
        )
    return problems + _empty_items("requirement", [r for _, r in scope.requirements()])


def tasks_content_problems(tasks: Sequence[PlannedTask]) -> list[str]:
    """Return why a list of planned tasks says nothing (placeholders, all alike, no text), or []."""
    problems = _empty_items("task", tasks)
    if not problems and tasks and all(not t.description.strip() for t in tasks):
        problems.append(
            "no task has a description: say in each what to build, precisely enough to code it"
        )
    return problems


def content_problems(answer: BaseModel) -> list[str]:
    """Return why a structured answer of the planner says nothing, or [] (other schemas: [])."""
    if isinstance(answer, Scope):
        return scope_content_problems(answer)
    if isinstance(answer, Plan | EpicTasks):
        return tasks_content_problems(answer.tasks)
    if isinstance(answer, Split):
        return tasks_content_problems(answer.subtasks)
    return []


def answer_says_nothing(text: str) -> bool:
    """Return whether a proposed answer (a default, an option) is a placeholder, not an answer."""
    plain = " ".join(text.lower().split())
    return not _ALNUM.search(plain) or plain in _EMPTY_DEFAULTS


def clarification_problem(c: Clarification) -> str | None:
    """Say why a clarification cannot be put to a person (it says nothing), or None."""
    if says_nothing(c.question):
        return f"clarification dropped: its question {c.question[:200]!r} says nothing"
    if answer_says_nothing(c.default):
        return f"clarification dropped: its default {c.default[:200]!r} says nothing"
    return None

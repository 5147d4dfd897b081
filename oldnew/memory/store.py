"""Run memory and the machine's knowledge base, on LangGraph's Store interface.

Namespaces::

    ("oldnew", "run", <run id>)             decisions, constraints, learnings, mistakes of a run
    ("oldnew", "knowledge", "fixes")        fixes that worked, keyed by error signature
    ("oldnew", "knowledge", "templates")    task outputs that passed every gate

The same code runs on the SQLite store of one machine and on a LangGraph server's store. A
store that fails (corrupted, locked) or an entry that no longer parses never stops a run: the
entry is left out, and :attr:`Memory.problems` says what was left out and why.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from langgraph.store.base import BaseStore
from pydantic import BaseModel, Field, ValidationError

from oldnew.memory.signature import ErrorSignature
from oldnew.memory.similarity import LexicalSimilarity, Similarity

VERSION = 1
RUN = ("oldnew", "run")
FIXES = ("oldnew", "knowledge", "fixes")
TEMPLATES = ("oldnew", "knowledge", "templates")
PLACEHOLDER = "{{project}}"
_SCAN_LIMIT = 20_000
T = TypeVar("T")

Kind = Literal["decision", "constraint", "learning", "mistake"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def tokens(text: str) -> int:
    """Return a rough token count (four characters a token)."""
    return max(1, len(text) // 4)


class MemoryEntry(BaseModel):
    """One thing a run learned."""

    v: int = VERSION
    kind: Kind
    text: str = Field(min_length=1)
    reason: str = ""
    task_id: str | None = None
    files: list[str] = Field(default_factory=list)
    requirement_ids: list[str] = Field(default_factory=list)
    created: str = Field(default_factory=_now)

    def render(self) -> str:
        """Return the entry as one prompt line."""
        why = f" (because {self.reason})" if self.reason else ""
        return f"[{self.kind}] {self.text}{why}"


class FixRecord(BaseModel):
    """A fix that made an error go away, shared by every run on the machine."""

    v: int = VERSION
    signature: str
    tool: str
    rule: str = ""
    message: str
    fix: str = Field(min_length=1)
    task_text: str = ""
    run_id: str = ""
    """The run that recorded it ("" for a record from before runs were noted)."""
    helped: int = 0
    unhelpful: int = 0
    created: str = Field(default_factory=_now)

    @property
    def trust(self) -> float:
        """Return how often it helped, smoothed: 0.5 for a new record."""
        return (self.helped + 1) / (self.helped + self.unhelpful + 2)

    @property
    def faded(self) -> bool:
        """True when it was offered several times and mostly did not help."""
        return self.unhelpful >= 3 and self.trust < 0.3


class Template(BaseModel):
    """A task output that passed every gate, with the project's name made a placeholder."""

    v: int = VERSION
    description: str
    files: dict[str, str]
    evidence: str = ""
    source_project: str = ""
    uses: int = 0
    created: str = Field(default_factory=_now)

    def instantiate(self, project: str) -> dict[str, str]:
        """Return the files with the placeholder replaced by ``project``'s name."""
        slug = project_slug(project)
        return {
            p.replace(PLACEHOLDER, slug): t.replace(PLACEHOLDER, slug)
            for p, t in self.files.items()
        }


def project_slug(title: str) -> str:
    """Return the identifier form of a project's title ("To-Do App" -> "to_do_app")."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or "project"


class Memory:
    """Run memory and knowledge base of one run, over a LangGraph store (or none)."""

    def __init__(
        self, store: BaseStore | None, run_id: str, similarity: Similarity | None = None
    ) -> None:
        """Use ``store`` for run ``run_id``; with no store, everything is a no-op."""
        self.store = store
        self.run_ns = (*RUN, run_id)
        self.similarity = similarity or LexicalSimilarity()
        self.problems: list[str] = []

    @property
    def run_id(self) -> str:
        """The id of the run this memory serves."""
        return self.run_ns[-1]

    @property
    def available(self) -> bool:
        """True when there is a store to remember in."""
        return self.store is not None

    async def _safe(self, what: str, call: Awaitable[T], default: T) -> T:
        try:
            return await call
        except Exception as exc:  # noqa: BLE001 - a broken memory must never stop a run
            self.problems.append(
                f"memory: {what} failed ({type(exc).__name__}: {exc}); going on without it"
            )
            return default

    async def _items(self, namespace: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
        if self.store is None:
            return []
        found = await self._safe(
            f"reading {'/'.join(namespace)}", self.store.asearch(namespace, limit=_SCAN_LIMIT), []
        )
        return [(item.key, item.value) for item in found]

    def _parse(self, model: type[BaseModel], key: str, value: dict[str, Any]) -> Any:
        if value.get("v") != VERSION:
            self.problems.append(
                f"memory: entry {key} is from format version {value.get('v')} "
                f"(this is {VERSION}); left out"
            )
            return None
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            self.problems.append(
                f"memory: entry {key} does not parse; left out ({exc.error_count()} errors)"
            )
            return None

    # -- run memory -------------------------------------------------------------------------

    async def remember(
        self,
        kind: Kind,
        text: str,
        *,
        reason: str = "",
        task_id: str | None = None,
        files: Iterable[str] = (),
        requirement_ids: Iterable[str] = (),
    ) -> str | None:
        """Record what the run learned; return the entry's key (None without a store)."""
        if self.store is None or not text.strip():
            return None
        entry = MemoryEntry(
            kind=kind,
            text=text.strip(),
            reason=reason,
            task_id=task_id,
            files=sorted(files),
            requirement_ids=sorted(requirement_ids),
        )
        key = f"{kind}-{_digest(text, task_id or '')}"
        await self._safe("writing", self.store.aput(self.run_ns, key, entry.model_dump()), None)
        return key

    async def entries(self) -> list[tuple[str, MemoryEntry]]:
        """Return every readable entry of the run."""
        out = []
        for key, value in await self._items(self.run_ns):
            entry = self._parse(MemoryEntry, key, value)
            if entry is not None:
                out.append((key, entry))
        return out

    async def relevant(
        self,
        *,
        text: str,
        files: Sequence[str] = (),
        requirement_ids: Sequence[str] = (),
        budget_tokens: int,
        min_score: float = 0.2,
    ) -> list[MemoryEntry]:
        """Return the entries relevant to a task, most relevant first, within the budget.

        Relevance: shared files and requirement ids count one each, plus the text
        similarity of the entry and the task. Entries below ``min_score`` are left out.
        """
        scored = []
        for _, entry in await self.entries():
            score = (
                len(set(files) & set(entry.files))
                + len(set(requirement_ids) & set(entry.requirement_ids))
                + self.similarity.score(f"{entry.text} {entry.reason}", text)
            )
            if score >= min_score:
                scored.append((score, entry.created, entry))
        scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
        chosen, used = [], 0
        for _, _, entry in scored:
            cost = tokens(entry.render()) + 1
            if used + cost > budget_tokens:
                continue
            chosen.append(entry)
            used += cost
        return chosen

    # -- knowledge base: fixes --------------------------------------------------------------

    async def record_fix(self, sig: ErrorSignature, fix: str, task_text: str) -> str | None:
        """Remember that ``fix`` made the error ``sig`` go away; return its key."""
        if self.store is None:
            return None
        key = f"{sig.key}-{_digest(fix)[:8]}"
        current = await self._safe("reading a fix", self.store.aget(FIXES, key), None)
        if current is not None:
            record = self._parse(FixRecord, key, current.value)
            if record is not None:
                return key
        record = FixRecord(
            signature=sig.key,
            tool=sig.tool,
            rule=sig.rule,
            message=sig.message,
            fix=fix[:4000],
            task_text=task_text[:1000],
            run_id=self.run_id,
        )
        await self._safe("writing a fix", self.store.aput(FIXES, key, record.model_dump()), None)
        return key

    async def fixes(self) -> list[tuple[str, FixRecord]]:
        """Return every readable fix record of the knowledge base."""
        out = []
        for key, value in await self._items(FIXES):
            record = self._parse(FixRecord, key, value)
            if record is not None:
                out.append((key, record))
        return out

    async def fixes_for(
        self, sigs: Iterable[ErrorSignature], limit: int = 3
    ) -> list[tuple[str, FixRecord]]:
        """Return the fixes that worked before for these signatures, most trusted first."""
        wanted = {s.key for s in sigs}
        found = [(k, r) for k, r in await self.fixes() if r.signature in wanted and not r.faded]
        found.sort(key=lambda kr: (kr[1].trust, kr[1].helped), reverse=True)
        return found[:limit]

    async def lessons_for(
        self, task_text: str, *, limit: int = 3, min_similarity: float = 0.3
    ) -> list[FixRecord]:
        """Return mistakes made in similar tasks of earlier runs, with how they were fixed.

        This run's own fixes are not among them (its run memory has them).
        """
        scored = [
            (self.similarity.score(r.task_text, task_text), r)
            for _, r in await self.fixes()
            if not r.faded and r.task_text and r.run_id != self.run_id
        ]
        scored = [s for s in scored if s[0] >= min_similarity]
        scored.sort(key=lambda s: (s[0], s[1].trust), reverse=True)
        return [r for _, r in scored[:limit]]

    async def mark_fix(self, key: str, *, helped: bool) -> None:
        """Count that the fix ``key`` was offered and did (or did not) help."""
        if self.store is None:
            return
        current = await self._safe("reading a fix", self.store.aget(FIXES, key), None)
        record = self._parse(FixRecord, key, current.value) if current is not None else None
        if record is None:
            return
        if helped:
            record.helped += 1
        else:
            record.unhelpful += 1
        await self._safe("writing a fix", self.store.aput(FIXES, key, record.model_dump()), None)

    # -- knowledge base: templates ----------------------------------------------------------

    async def templates(self) -> list[tuple[str, dict[str, Any]]]:
        """Return every template of work that passed every check, as (key, value)."""
        return await self._items(TEMPLATES)

    async def save_template(
        self, description: str, files: dict[str, str], *, project: str, evidence: str = ""
    ) -> str | None:
        """Save a task output that passed every gate, with its project's name made generic."""
        if self.store is None or not files:
            return None
        slug = project_slug(project)
        word = re.compile(rf"\b{re.escape(slug)}\b")
        generic = {word.sub(PLACEHOLDER, p): word.sub(PLACEHOLDER, t) for p, t in files.items()}
        template = Template(
            description=description, files=generic, evidence=evidence, source_project=project
        )
        key = f"template-{_digest(description)}"
        await self._safe(
            "writing a template", self.store.aput(TEMPLATES, key, template.model_dump()), None
        )
        return key

    async def find_template(
        self, description: str, threshold: float
    ) -> tuple[str, Template, float] | None:
        """Return the saved template closest to ``description`` if it reaches ``threshold``."""
        best: tuple[str, Template, float] | None = None
        for key, value in await self._items(TEMPLATES):
            template = self._parse(Template, key, value)
            if template is None:
                continue
            score = self.similarity.score(template.description, description)
            if score >= threshold and (best is None or score > best[2]):
                best = (key, template, score)
        return best

    async def mark_template_used(self, key: str, template: Template) -> None:
        """Count one more reuse of the template ``key``."""
        if self.store is None:
            return
        template.uses += 1
        await self._safe(
            "writing a template", self.store.aput(TEMPLATES, key, template.model_dump()), None
        )

    async def remove(self, namespace: tuple[str, ...], key: str) -> bool:
        """Delete one entry; return whether it existed."""
        if self.store is None:
            return False
        found = await self._safe("reading", self.store.aget(namespace, key), None)
        if found is None:
            return False
        await self._safe("deleting", self.store.adelete(namespace, key), None)
        return True

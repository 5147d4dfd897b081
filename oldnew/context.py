"""Run configuration: one keyword-only dataclass that nodes read from ``runtime.context``.

Precedence for every field: the value passed explicitly (CLI flag, Python argument, the
``context`` of a LangGraph server run), then the ``OLDNEW_*`` environment variable (a ``.env``
in the working directory included, never over a variable already set), then the settings file
(``oldnew.toml`` or ``[tool.oldnew]`` in ``pyproject.toml`` of the working directory, read by
``oldnew.settings.load``: the CLI does at startup, a server run does not), then the default
below. "Explicit" means given when the Context was made, at its default value too
(``--budget-tokens 0`` beats a file's cap). A field renamed since keeps its old name as an
alias, so that a workspace an older version saved (its ``run.json`` stores the run's explicit
context) still
loads: ``gates`` (and ``OLDNEW_GATES``) for ``approvals``. The environment and the file are
read again by every command, a resume included.

Every setting is checked when a Context is made, whichever way its values came in: numbers
against ``LIMITS`` (agents, caps, timeouts, percentages), choices against ``CHOICES``, tables
by reading them (``TABLES``). A value that makes no sense stops the run before anything is
created; one from a settings file is checked when the file is read (``read_setting``).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field, fields
from typing import Any, Literal

from oldnew.errors import ConfigurationError, UsageError
from oldnew.recovery.retry import RetryPolicy

SCOPE_CHARS_PER_TOKEN = 4
"""How scope text is counted in tokens (the estimate ``oldnew.planning.words`` budgets with)."""

Role = Literal["planner", "coder", "fixer", "tester"]
ROLES: tuple[Role, ...] = ("planner", "coder", "fixer", "tester")
DEFAULT_PRICES = (
    "gpt-4o=2.5/10,gpt-4o-mini=0.15/0.6,gpt-4.1=2/8,gpt-4.1-mini=0.4/1.6,gpt-4.1-nano=0.1/0.4,"
    "o3=2/8,o3-mini=1.1/4.4,o4-mini=1.1/4.4,gpt-5=1.25/10,gpt-5-mini=0.25/2,gpt-5-nano=0.05/0.4,"
    "scripted=0/0"
)
"""USD per 1M input/output tokens (OpenAI list prices, 2025); scripted transcripts are free."""


@dataclass
class FileLayer:
    """What ``oldnew.settings.load`` read, for every Context made afterwards in this process.

    ``values`` are the settings file's (checked when it was read); ``dotenv`` says which
    variables a ``.env`` set, and from which file, for messages.
    """

    values: dict[str, Any] = field(default_factory=dict)
    dotenv: dict[str, str] = field(default_factory=dict)

    def origin(self, var: str) -> str:
        """Say where environment variable ``var`` came from: its name, and its .env."""
        where = self.dotenv.get(var)
        return f"{var} in {where}" if where is not None else var


FILE_LAYER = FileLayer()
"""The settings-file layer of precedence (empty until ``oldnew.settings.load``)."""


@dataclass(kw_only=True)
class Context:
    """How one run behaves; every loop in the graph takes its cap from here."""

    model: str | None = field(
        default=None,
        metadata={
            "description": "Model spec for every role: 'provider:model' (any provider "
            "LangChain's init_chat_model knows, e.g. 'openai:gpt-4o-mini', "
            "'anthropic:claude-sonnet-4-5', 'ollama:llama3.1'), a model name whose provider "
            "LangChain infers ('gpt-4o-mini'), or 'scripted:<transcript file>'. Env: OLDNEW_MODEL.",
            "model": True,
        },
    )
    planner_model: str | None = field(
        default=None,
        metadata={"description": "Spec for the planner role; falls back to model.", "model": True},
    )
    coder_model: str | None = field(
        default=None,
        metadata={"description": "Spec for the coder role; falls back to model.", "model": True},
    )
    fixer_model: str | None = field(
        default=None,
        metadata={"description": "Spec for the fixer role; falls back to model.", "model": True},
    )
    tester_model: str | None = field(
        default=None,
        metadata={
            "description": "Spec for the tester role (writes the acceptance suite from the "
            "requirements, never sees the code); falls back to model.",
            "model": True,
        },
    )
    base_url: str | None = field(
        default=None,
        metadata={
            "description": "Endpoint of every role's model (an OpenAI-compatible server, "
            "Ollama, a proxy); unset: the provider's own variable (OPENAI_BASE_URL, ...). Its "
            "key is OLDNEW_API_KEY (never a setting); a local server needs none. "
            "Env: OLDNEW_BASE_URL.",
            "model": True,
        },
    )
    planner_base_url: str | None = field(
        default=None,
        metadata={
            "description": "Endpoint of the planner's model (key: OLDNEW_PLANNER_API_KEY); "
            "falls back to base_url.",
            "model": True,
        },
    )
    coder_base_url: str | None = field(
        default=None,
        metadata={
            "description": "Endpoint of the coder's model (key: OLDNEW_CODER_API_KEY); "
            "falls back to base_url.",
            "model": True,
        },
    )
    fixer_base_url: str | None = field(
        default=None,
        metadata={
            "description": "Endpoint of the fixer's model (key: OLDNEW_FIXER_API_KEY); "
            "falls back to base_url.",
            "model": True,
        },
    )
    tester_base_url: str | None = field(
        default=None,
        metadata={
            "description": "Endpoint of the tester's model (key: OLDNEW_TESTER_API_KEY); "
            "falls back to base_url.",
            "model": True,
        },
    )
    structured_output_method: Literal["json_schema", "function_calling"] = field(
        default="json_schema",
        metadata={
            "description": "How structured output is requested (LangChain's "
            "with_structured_output method); 'function_calling' for servers and models "
            "without json_schema support.",
            "model": True,
        },
    )
    model_timeout: float = field(
        default=300.0,
        metadata={
            "description": "Seconds one model call may take in all, its whole reply "
            "included, before it fails as a timeout (then retried as transient). "
            "Env: OLDNEW_MODEL_TIMEOUT.",
            "model": True,
        },
    )
    record: str | None = field(
        default=None,
        metadata={
            "description": "Transcript file every model exchange of the run is appended to "
            "(prompt, reply, tool calls, structured output, usage); 'scripted:<file>' replays "
            "it offline. Kept for resumes. Env: OLDNEW_RECORD.",
            "model": True,
        },
    )
    workspace: str | None = field(
        default=None,
        metadata={
            "description": "Directory of the run's git workspace. When unset (a LangGraph "
            "server run), runs/<thread id> under the current directory."
        },
    )
    max_agents: int = field(
        default=0,
        metadata={
            "description": "Tasks that run at the same time, at most; 0 takes the number "
            "from the scope's complexity class (class_agents). Within it, the number follows "
            "the work: one agent per four tasks ready or running, at least three."
        },
    )
    gate_slots: int = field(
        default=0,
        metadata={
            "description": "Validations that run at the same time, at most (a task's own and "
            "the merge queue's); 0: one per CPU, at least two."
        },
    )
    max_fix_rounds: int = field(
        default=3,
        metadata={"description": "Fix rounds per task before a person is asked."},
    )
    max_output_retries: int = field(
        default=2,
        metadata={
            "description": "Re-asks when model output does not parse, before escalating.",
            "model": True,
        },
    )
    max_plan_repairs: int = field(
        default=2,
        metadata={"description": "Times an invalid plan is sent back to the planner."},
    )
    max_transient_retries: int = field(
        default=5,
        metadata={
            "description": "Tries of a model call that fails transiently (429, 5xx, "
            "timeouts) before its failure is escalated.",
            "model": True,
        },
    )
    retry_base_delay: float = field(
        default=1.0,
        metadata={
            "description": "Seconds of the first backoff; doubles each retry, jittered.",
            "model": True,
        },
    )
    retry_max_delay: float = field(
        default=60.0,
        metadata={
            "description": "Longest wait between two tries, Retry-After included.",
            "model": True,
        },
    )
    rate_limit_delay: float = field(
        default=20.0,
        metadata={
            "description": "Wait after a rate limit that names no Retry-After.",
            "model": True,
        },
    )
    memory_path: str = field(
        default="~/.oldnew/memory.sqlite",
        metadata={
            "description": "SQLite file of the memory store: run memory and the knowledge "
            "base every run on this machine shares (a run with --state keeps its memory in "
            "that database instead). 'off' disables memory."
        },
    )
    memory_token_budget: int = field(
        default=1200,
        metadata={"description": "Tokens of run memory a prompt may carry, at most."},
    )
    context_tokens: int = field(
        default=8000,
        metadata={
            "description": "Tokens of project files one coder or fixer prompt may carry: the "
            "files the task touches and builds on in full, a map of the rest, and the list of "
            "what was left out (the model fetches more with its ReadFile tool).",
            "model": True,
        },
    )
    max_file_reads: int = field(
        default=8,
        metadata={
            "description": "Files one coder or fixer turn may fetch with the ReadFile tool; "
            "past that it is told to write its files.",
            "model": True,
        },
    )
    template_threshold: float = field(
        default=0.8,
        metadata={"description": "Similarity from which a saved template seeds a new task."},
    )
    test_timeout: float = field(
        default=120.0,
        metadata={"description": "Seconds a validation command may run before it is killed."},
    )
    milestone_fixes: int = field(
        default=2,
        metadata={
            "description": "Fix tasks a milestone whose gates fail on main gets (browser tests, "
            "accessibility, Lighthouse, load for a web app) before it is reported as failed."
        },
    )
    preview_port: int = field(
        default=3000,
        metadata={
            "description": "Port of the preview a web app gets at its MVP milestone (the next "
            "free one when it is taken); 0: no preview during runs. Env: OLDNEW_PREVIEW_PORT."
        },
    )
    complexity_weights: str = field(
        default="features=2,integrations=3,pages=1,models=2,apis=1.5",
        metadata={"description": "Points per scope item of each kind in the complexity score."},
    )
    complexity_thresholds: str = field(
        default="simple=20,medium=50,complex=100",
        metadata={"description": "Scores below which a scope is in each class; above: monster."},
    )
    class_tasks: str = field(
        default="simple=6-8,medium=12-15,complex=25-30,monster=50-100",
        metadata={"description": "Tasks a plan of each complexity class should have."},
    )
    class_agents: str = field(
        default="simple=2,medium=3,complex=5,monster=8-10",
        metadata={
            "description": "Agents each complexity class runs at once (a range grows "
            "with the score)."
        },
    )
    phased_classes: str = field(
        default="monster",
        metadata={"description": "Classes planned in phases, epic by epic (comma-separated)."},
    )
    plan_size_tolerance: float = field(
        default=3.0,
        metadata={
            "description": "A plan is rejected as mis-sized only when its task count is below "
            "the class's minimum divided by this, or above its maximum times this."
        },
    )
    scope_chunk_chars: int = field(
        default=24_000,
        metadata={
            "description": "Characters of scope text one model call reads; longer scopes "
            "are read section by section and merged."
        },
    )
    max_scope_sections: int = field(
        default=40,
        metadata={"description": "Sections a scope may be read in before a person is asked."},
    )
    max_task_description: int = field(
        default=500,
        metadata={"description": "A planned task with a longer description is split."},
    )
    split_after_failures: int = field(
        default=2,
        metadata={
            "description": "Failed validations after which a task whose fix rounds ran "
            "out is split into 3 to 5 subtasks (0: never)."
        },
    )
    task_time_limit: float = field(
        default=900.0,
        metadata={
            "description": "Seconds of a task's own work (its waits for the model not "
            "counted) before it is stopped and split (0: no limit).",
            "model": True,
        },
    )
    task_wait_limit: float = field(
        default=3600.0,
        metadata={
            "description": "Seconds a task may wait for model replies in all (retry "
            "backoff included) before it is stopped: a provider slow for ever still ends "
            "the task (0: no limit). Env: OLDNEW_TASK_WAIT_LIMIT.",
            "model": True,
        },
    )
    max_split_depth: int = field(
        default=1,
        metadata={"description": "How deep splits go: 1 splits a task once, never its pieces."},
    )
    max_replans: int = field(
        default=2,
        metadata={
            "description": "Re-plans for design flaws found while coding, before the "
            "flaw goes to a person."
        },
    )
    planner_concurrency: int = field(
        default=8,
        metadata={"description": "Planner model calls in flight at once (epics, sections)."},
    )
    approvals: str = field(
        default="",
        metadata={
            "description": "Approvals that pause the run for a person, comma-separated: "
            "scope, design, mvp, final, or 'all'. Env: OLDNEW_APPROVALS (or OLDNEW_GATES).",
            "env_aliases": ("OLDNEW_GATES",),
        },
    )
    gates: InitVar[str | None] = None
    """The former name of ``approvals``, still taken (older run.json files, API callers)."""
    yes: bool = field(
        default=False,
        metadata={
            "description": "Give every approval that is on without a pause (recorded as decisions)."
        },
    )
    acceptance: bool = field(
        default=True,
        metadata={
            "description": "Have the tester role write an acceptance suite from the "
            "requirements' criteria before the code (tests/acceptance/), run it on main as a "
            "gate, and trace each criterion to its tests. Env: OLDNEW_ACCEPTANCE (0 turns it "
            "off)."
        },
    )
    quality: Literal["strict", "default", "fast", "smoke"] = field(
        default="default",
        metadata={
            "description": "Quality profile: which gates run and their thresholds "
            "(oldnew.gates.profiles). Env: OLDNEW_QUALITY."
        },
    )
    coverage_min: float | None = field(
        default=None,
        metadata={"description": "Minimum line coverage in percent; unset: the profile's."},
    )
    complexity_max: int | None = field(
        default=None,
        metadata={
            "description": "Highest cyclomatic complexity of a function; unset: the profile's."
        },
    )
    prices: str = field(
        default=DEFAULT_PRICES,
        metadata={
            "description": "USD per 1M input/output tokens per model, 'name=in/out' comma-"
            "separated; a name matches the model it equals or begins (longest wins). A model "
            "not listed costs 0 and is reported as unpriced. Env: OLDNEW_PRICES.",
            "model": True,
        },
    )
    budget_tokens: int = field(
        default=0,
        metadata={"description": "Tokens (input + output) the whole run may use; 0: no cap."},
    )
    budget_cost: float = field(
        default=0.0,
        metadata={"description": "USD the whole run may spend (from prices); 0: no cap."},
    )
    budget_task_tokens: int = field(
        default=0,
        metadata={"description": "Tokens one task may use; 0: no cap. Other tasks go on."},
    )
    budget_seconds: float = field(
        default=0.0,
        metadata={
            "description": "Seconds of working time (waits for a person excluded) the run "
            "may take; 0: no cap."
        },
    )

    defaults: Literal["ask", "high", "auto"] = field(
        default="high",
        metadata={
            "description": "Which scope clarifications a person is asked: 'ask' all of them, "
            "'high' only high-priority ones (the others take their proposed default), 'auto' "
            "none. Defaults taken are recorded as decisions. Env: OLDNEW_DEFAULTS."
        },
    )
    deps: Literal["ask", "auto", "off"] = field(
        default="ask",
        metadata={
            "description": "New third-party packages a task declares: 'ask' a person to "
            "approve those the scope does not name (those it names are approved), 'auto' "
            "approve all, 'off' allow none (the coder is told to do without). "
            "Env: OLDNEW_DEPS."
        },
    )
    package_index: str | None = field(
        default=None,
        metadata={
            "description": "Python package index (simple-API URL or folder) to resolve and "
            "install from; unset: PyPI. Env: OLDNEW_PACKAGE_INDEX."
        },
    )
    npm_registry: str | None = field(
        default=None,
        metadata={"description": "npm registry URL; unset: npm's own. Env: OLDNEW_NPM_REGISTRY."},
    )
    deps_cache: str | None = field(
        default=None,
        metadata={
            "description": "Folder of project environments (keyed by lock hash) and package "
            "caches, shared by runs; unset: ~/.cache/oldnew. Env: OLDNEW_DEPS_CACHE."
        },
    )
    install_timeout: float = field(
        default=600.0,
        metadata={"description": "Seconds one dependency resolution or install may take."},
    )
    max_packages: int = field(
        default=150,
        metadata={"description": "Packages a project's lock may pin, at most; 0: no cap."},
    )
    max_install_mb: float = field(
        default=2000.0,
        metadata={"description": "Megabytes a project's environment may hold; 0: no cap."},
    )
    notify: str | None = field(
        default=None,
        metadata={
            "description": "Called when the run needs a person and when it finishes: an "
            "http(s) URL (JSON POSTed) or a command line (JSON on stdin, the event in "
            "OLDNEW_NOTIFY_EVENT). A failing hook never fails the run. Env: OLDNEW_NOTIFY."
        },
    )
    notify_timeout: float = field(
        default=10.0,
        metadata={"description": "Seconds a notification hook may take before it is given up."},
    )
    # -- planning from the person's words (issue 16) --
    plan_scope_tokens: int = field(
        default=0,
        metadata={
            "description": "Tokens of the person's scope text a planning prompt carries beside "
            "the extracted requirements (4 characters a token): the whole text of a short "
            "scope, the sections a long one's requirements came from; what does not fit is "
            "listed as left out. 0: scope_chunk_chars / 4, no more text than one scope "
            "extraction call reads, so it fits where that call fits. "
            "Env: OLDNEW_PLAN_SCOPE_TOKENS.",
            "model": True,
        },
    )

    def __post_init__(self, gates: str | None) -> None:
        """Fill unset fields from ``OLDNEW_<FIELD>`` variables, then the settings file; check.

        Raises:
            UsageError: a setting (given or from the environment) is outside what it allows;
                the message names the setting, the variable (and the .env that set it) and
                the allowed values (LIMITS).
            ConfigurationError: a table setting (weights, thresholds, class sizes, prices)
                does not read.

        """
        if gates is not None and self.approvals == "":
            self.approvals = gates
        layer = FILE_LAYER.values  # checked when the file was read
        given: frozenset[str] = getattr(self, GIVEN, frozenset())
        for f in fields(self):
            if f.name in given or getattr(self, f.name) != f.default:
                continue
            names = (f"OLDNEW_{f.name.upper()}", *f.metadata.get("env_aliases", ()))
            var = next((n for n in names if n in os.environ), None)
            if var is None:
                if f.name in layer:
                    setattr(self, f.name, layer[f.name])
                continue
            current, env = getattr(self, f.name), os.environ[var]
            if isinstance(current, bool):
                setattr(self, f.name, env.lower() in {"1", "true", "yes"})
            elif f.name in LIMITS:
                setattr(self, f.name, _number(f.name, env, FILE_LAYER.origin(var)))
            else:
                setattr(self, f.name, env)
        for name in LIMITS:
            value = getattr(self, name)
            if value is not None or name not in OPTIONAL:
                setattr(self, name, _number(name, value, None))
        self._check()

    def _check(self) -> None:
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().lower() in choices:
                setattr(self, name, value.strip().lower())
            else:
                allowed = f"{', '.join(choices[:-1])} or {choices[-1]}"
                raise UsageError(
                    f"{name} must be {allowed}, not {value!r} (env OLDNEW_{name.upper()})"
                )
        check_tables(self)
        target = (self.notify or "").strip()
        if "://" in target.split(" ", 1)[0] and not target.startswith(("http://", "https://")):
            raise UsageError(f"notify must be an http(s) URL or a command line, not {target!r}")

    def scope_words_tokens(self) -> int:
        """Return the tokens of the person's words a planning prompt carries (plan_scope_tokens).

        0 (the default) is as much of the text as one scope extraction call reads.
        """
        return self.plan_scope_tokens or self.scope_chunk_chars // SCOPE_CHARS_PER_TOKEN

    def retry_policy(self) -> RetryPolicy:
        """Return the retry policy for transient failures of model calls.

        Each try has ``model_timeout`` in all: the client's own timeout bounds each read only.
        """
        return RetryPolicy(
            max_attempts=max(1, self.max_transient_retries),
            base_delay=self.retry_base_delay,
            max_delay=self.retry_max_delay,
            rate_limit_delay=self.rate_limit_delay,
            timeout=self.model_timeout,
        )

    def model_spec(self, role: Role) -> str | None:
        """Return the spec for ``role``: its own field, else the shared ``model``."""
        own: str | None = getattr(self, f"{role}_model")
        return own or self.model

    def model_base_url(self, role: Role) -> str | None:
        """Return the endpoint for ``role``: its own field, else the shared ``base_url``."""
        own: str | None = getattr(self, f"{role}_base_url")
        return own or self.base_url


GIVEN = "_given"
"""The instance attribute naming the settings a Context was made with (its keyword arguments):
those are explicit, even at their default value, and the environment and the file yield."""
_dataclass_init = Context.__init__


@functools.wraps(_dataclass_init)  # its signature too: inspect.signature(Context) reads it
def _init_noting_given(self: Context, **values: object) -> None:
    former = {"approvals"} if "gates" in values else set()
    object.__setattr__(self, GIVEN, frozenset(values) | former)
    _dataclass_init(self, **values)  # type: ignore[arg-type]


Context.__init__ = _init_noting_given  # type: ignore[method-assign]


@dataclass(frozen=True)
class Limit:
    """What a numeric setting allows: whole or not, its lowest and highest value, and why."""

    whole: bool
    low: float
    high: float = math.inf
    above: bool = False
    """The value must be above ``low`` (not equal to it)."""
    note: str = ""
    """What a special value means, e.g. '0: no cap'."""

    def allowed(self) -> str:
        """Say in words which values are allowed."""
        kind = "a whole number" if self.whole else "a number"
        low = f"{self.low:g}"
        if self.high < math.inf:
            span = f"from {low} to {self.high:g}"
        else:
            span = f"above {low}" if self.above else f"of at least {low}"
        return f"{kind} {span}" + (f" ({self.note})" if self.note else "")


LIMITS: dict[str, Limit] = {
    "max_agents": Limit(True, 0, note="0: from the scope's complexity class"),
    "gate_slots": Limit(True, 0, note="0: one per CPU, at least two"),
    "max_fix_rounds": Limit(True, 0),
    "max_output_retries": Limit(True, 0),
    "max_plan_repairs": Limit(True, 0),
    "max_transient_retries": Limit(True, 1, note="tries, the first one included"),
    "retry_base_delay": Limit(False, 0),
    "retry_max_delay": Limit(False, 0),
    "rate_limit_delay": Limit(False, 0),
    "memory_token_budget": Limit(True, 0),
    "context_tokens": Limit(True, 500),
    "max_file_reads": Limit(True, 0, note="0: no reads"),
    "template_threshold": Limit(False, 0, 1),
    "test_timeout": Limit(False, 0, above=True),
    "model_timeout": Limit(False, 0, above=True),
    "milestone_fixes": Limit(True, 0),
    "preview_port": Limit(True, 0, 65535, note="0: no preview during runs"),
    "plan_size_tolerance": Limit(False, 1),
    "scope_chunk_chars": Limit(True, 100),
    "max_scope_sections": Limit(True, 1),
    "max_task_description": Limit(True, 1),
    "split_after_failures": Limit(True, 0, note="0: never"),
    "task_time_limit": Limit(False, 0, note="0: no limit"),
    "task_wait_limit": Limit(False, 0, note="0: no limit"),
    "max_split_depth": Limit(True, 0),
    "max_replans": Limit(True, 0),
    "planner_concurrency": Limit(True, 1),
    "coverage_min": Limit(False, 0, 100, note="percent; unset: the profile's"),
    "complexity_max": Limit(True, 1, note="unset: the profile's"),
    "budget_tokens": Limit(True, 0, note="0: no cap"),
    "budget_cost": Limit(False, 0, note="0: no cap"),
    "budget_task_tokens": Limit(True, 0, note="0: no cap"),
    "budget_seconds": Limit(False, 0, note="0: no cap"),
    "notify_timeout": Limit(False, 0, above=True),
    "install_timeout": Limit(False, 0, above=True),
    "max_packages": Limit(True, 0, note="0: no cap"),
    "max_install_mb": Limit(False, 0, note="0: no cap"),
    "plan_scope_tokens": Limit(True, 0, note="0: scope_chunk_chars / 4"),
}
"""Every numeric setting of Context and the values it allows; checked when a Context is made."""
OPTIONAL = frozenset({"coverage_min", "complexity_max"})
"""Numeric settings that may be unset (None)."""
CHOICES: dict[str, tuple[str, ...]] = {
    "deps": ("ask", "auto", "off"),
    "defaults": ("ask", "high", "auto"),
    "quality": ("strict", "default", "fast", "smoke"),
    "structured_output_method": ("json_schema", "function_calling"),
}


CLASSES = ("simple", "medium", "complex", "monster")
PARTS = ("features", "integrations", "pages", "models", "apis")


def parse_pairs(text: str, setting: str, names: tuple[str, ...]) -> dict[str, str]:
    """Read ``"a=1,b=2"``; every name in ``names`` must be present, no other."""
    out: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise ConfigurationError(f"{setting}: {item!r} is not 'name=value' (got {text!r})")
        out[key.strip()] = value.strip()
    if set(out) != set(names):
        raise ConfigurationError(
            f"{setting} must name exactly {', '.join(names)} (got {', '.join(sorted(out))})"
        )
    return out


def setting_number(value: str, setting: str) -> float:
    """Read one non-negative number of a ``name=value`` setting."""
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"{setting}: {value!r} is not a number") from None
    if number < 0:
        raise ConfigurationError(f"{setting}: {value!r} is negative")
    return number


def parse_range(value: str, setting: str) -> tuple[int, int]:
    """Read ``"6-8"`` or ``"5"`` as an inclusive range of positive integers."""
    low, _, high = value.partition("-")
    lo, hi = int(setting_number(low, setting)), int(setting_number(high or low, setting))
    if lo < 1 or hi < lo:
        raise ConfigurationError(f"{setting}: {value!r} is not a range like 6-8")
    return lo, hi


def _weights(text: str) -> None:
    for v in parse_pairs(text, "complexity_weights", PARTS).values():
        setting_number(v, "complexity_weights")


def _thresholds(text: str) -> None:
    bounds = parse_pairs(text, "complexity_thresholds", CLASSES[:-1])
    scores = [setting_number(bounds[c], "complexity_thresholds") for c in CLASSES[:-1]]
    if scores != sorted(set(scores)):
        raise ConfigurationError(
            f"complexity_thresholds must grow from simple to complex (got {text!r})"
        )


def _class_ranges(setting: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        for v in parse_pairs(text, setting, CLASSES).values():
            parse_range(v, setting)

    return check


def _prices(text: str) -> None:
    from oldnew.budget.ledger import parse_prices

    parse_prices(text)


TABLES: dict[str, Callable[[str], None]] = {
    "complexity_weights": _weights,
    "complexity_thresholds": _thresholds,
    "class_tasks": _class_ranges("class_tasks"),
    "class_agents": _class_ranges("class_agents"),
    "prices": _prices,
}
"""Every ``name=value`` table setting and the check that reads it (ConfigurationError)."""


def check_tables(ctx: Context) -> None:
    """Read every ``name=value`` setting of ``ctx``; raise ConfigurationError on a bad one."""
    for name, check in TABLES.items():
        check(getattr(ctx, name))


def read_setting(name: str, value: Any, where: str) -> Any:
    """Return ``value`` (from a settings file) as field ``name`` takes it, checked.

    The same checks as a Context's own (LIMITS, CHOICES, TABLES), with a message that says
    where the value came from.

    Raises:
        UsageError: the value is not one ``name`` allows; the message names ``where`` and
            what is allowed.

    """
    default = next(f.default for f in fields(Context) if f.name == name)
    if name in LIMITS:
        return _number(name, value, where)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, not {value!r}")
        return value
    if not isinstance(value, str):
        raise UsageError(f"{where} must be a string, not {value!r}")
    if name in CHOICES:
        choices = CHOICES[name]
        if value.strip().lower() not in choices:
            allowed = f"{', '.join(choices[:-1])} or {choices[-1]}"
            raise UsageError(f"{where} must be {allowed}, not {value!r}")
        return value.strip().lower()
    if name in TABLES:
        try:
            TABLES[name](value)
        except ConfigurationError as exc:
            raise UsageError(f"{where}: {exc}") from None
    return value


def _number(name: str, value: object, var: str | None) -> int | float:
    """Return ``value`` as setting ``name`` allows it, or raise UsageError saying what is allowed.

    A string (an environment variable, a server run's JSON context) is read as a number;
    a bool is not a number here.
    """
    limit = LIMITS[name]
    where = f" (from {var})" if var else ""
    refuse = UsageError(f"{name} must be {limit.allowed()}, not {value!r}{where}")
    number: int | float
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise refuse from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    else:
        raise refuse
    if not math.isfinite(number) or (limit.whole and number != int(number)):
        raise refuse
    if number < limit.low or number > limit.high or (limit.above and number == limit.low):
        raise refuse
    return int(number) if limit.whole else float(number)


def model_settings() -> list[tuple[str, str, str, str]]:
    """Return (setting, variable, default, meaning) for every model-facing Context field.

    A field is model-facing when its metadata says ``"model": True``; README.md's "Settings
    for real models" table is this list (a test checks it), so the doc cannot drift.
    """
    rows = []
    for f in fields(Context):
        if not f.metadata.get("model"):
            continue
        default = "unset" if f.default is None else f"`{f.default}`"
        if f.name == "prices":
            default = "OpenAI list prices"
        meaning = f.metadata["description"].split(" Env: ")[0]
        rows.append((f.name, f"`OLDNEW_{f.name.upper()}`", default, meaning))
    return rows


def model_settings_markdown() -> str:
    """Render :func:`model_settings` as the Markdown table README.md carries."""
    lines = ["| Setting | Variable | Default | Meaning |", "|---|---|---|---|"]
    lines += [f"| `{n}` | {v} | {d} | {m} |" for n, v, d, m in model_settings()]
    return "\n".join(lines) + "\n"

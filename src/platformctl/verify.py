"""The verify gate: render every target, validate schemas, run checkov and the project rules.

Two caches under ``.platform-cache/`` make a re-run cost what changed:

- A target's *inputs* (its chart's files, its values, what the rules read of its environment
  and the run's rule context, the engines) key its complete findings. When nothing a render
  depends on changed, the target is neither rendered nor checked: rendering is deterministic,
  and so are the engines, for the same inputs.
- Otherwise the target is rendered, and schema and checkov verdicts are keyed by a hash of the
  rendered documents with image fields normalized. The normalization keeps each image's *shape*
(repository; whether it has a tag, whether that tag is ``latest``; whether it has a digest),
which is everything checkov's image checks read (CKV_K8S_15 reads digest presence and the tag's
shape; the dashboard and tiller checks read the repository; CKV_K8S_14 and CKV_K8S_43 are
replaced by project rules). So a promotion, which changes only tag and digest, hits the cache
and does not pay checkov's start-up; the project rules, which do read the actual image, run
every time. Anything else that changes the rendered output (a value, a template) or the
engines (checkov's version, the schemas, this code) changes the key.

The twin of each environment is keyed on the inputs of all its targets, and also on them with
every release's tag and digest blanked (``_TwinKeys``), under which it is kept only when it
modelled the environment blind to them (``twin.images``): a promotion is answered by the twin
of the build before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass, field, replace
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from platformctl.cachefile import cache_dir, read_cache, write_cache
from platformctl.image_shapes import blank_image_values, blank_images
from platformctl.model import Repo
from platformctl.policy import rules as rule_set
from platformctl.policy.checkov_engine import (
    REPLACED_CHECKS,
    CheckovRun,
    check_ids,
    checkov_version,
    keep_check_ids,
)
from platformctl.policy.exceptions import (
    EXPIRED_CHECK,
    Excepted,
    PolicyException,
    UnusedException,
    apply_exceptions,
    load_exceptions,
    why_unused,
)
from platformctl.policy.findings import Finding
from platformctl.policy.rules import (
    RuleContext,
    allowed_kinds,
    gate_objectives,
    run_rules,
    source_repos,
)
from platformctl.policy.sources import ValueSources
from platformctl.render import (
    ADDONS_TARGET,
    GITOPS_TARGET,
    Job,
    Rendered,
    Renderer,
    target_key,
)
from platformctl.schemas import CRD_DIR, SchemaValidator
from platformctl.stacks import stack_findings
from platformctl.twin import CHECKS as TWIN_CHECKS
from platformctl.twin import check_environment
from platformctl.twin.images import images_unread
from platformctl.twin.stack import StackFacts, stack_facts
from platformctl.twin.world import Target
from platformctl.yamlio import display_path, located, read_mapping

CACHE_FILE = "verify.json"
_CRD = "CustomResourceDefinition"
Progress = Callable[[str, int, int], None]
_ENGINE_SOURCES = (
    "schemas.py",
    "verify.py",
    "image_shapes.py",
    "policy/checkov_engine.py",
    "render.py",
    "bridge.py",
)
# Entries kept, most recently used first: a few thousand targets' worth of promotions.
CACHE_LIMIT = 20_000


def engine_fingerprint() -> str:
    """Changes whenever a cached verdict could change for the same manifests."""
    digest = hashlib.sha256()
    digest.update(checkov_version().encode())
    digest.update(json.dumps(sorted(REPLACED_CHECKS)).encode())
    digest.update(installed_engines())
    return digest.hexdigest()


@cache
def installed_engines() -> bytes:
    """What of the engines only a new installation changes: the validator's, the Helm SDK's
    and the YAML library's versions (a render, and so every verdict, can change with the last
    two), the engines' code and the vendored CRDs. Read once per process (a command asks for the
    fingerprint several times, ~3 ms each), and by a started worker before it forks: it
    refuses a request from a changed installation (``launcher.fingerprint``)."""
    digest = hashlib.sha256()
    for engine in ("kubernetes-validate", "helm-python-sdk", "PyYAML"):
        digest.update(f"{engine} {version(engine)}\0".encode())
    package = Path(__file__).parent
    for name in _ENGINE_SOURCES:
        digest.update((package / name).read_bytes())
    for crd in sorted(CRD_DIR.glob("*_*.*")):
        digest.update(crd.name.encode())
        digest.update(str(crd.stat().st_size).encode())
    return digest.digest()


def rules_fingerprint() -> str:
    """Changes whenever the project rules could find otherwise: only input keys carry it, so
    a new rule re-runs the rules everywhere without re-running checkov."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in ("policy/rules.py", "policy/findings.py"):
        digest.update((package / name).read_bytes())
    rules = [(rule.id, rule.check.__module__, rule.check.__qualname__) for rule in rule_set.RULES]
    digest.update(json.dumps(rules).encode())
    return digest.hexdigest()


def cache_key(rendered: Rendered, fingerprint: str) -> str:
    payload = json.dumps(
        [
            fingerprint,
            rendered.environment.kubernetes_version,
            [blank_images(d) for d in rendered.documents],
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class VerdictCache:
    """Per-target verdicts on disk; a missing or unreadable cache is just empty.

    Kept to the ``CACHE_LIMIT`` most recently used entries (a run that hits everything
    writes nothing).
    """

    def __init__(self, folder: Path | None, fingerprint: str) -> None:
        self.folder = folder  # None: --no-cache
        self.path = folder / CACHE_FILE if folder else None
        self.fingerprint = fingerprint
        self.entries: dict[str, Any] = read_cache(self.path, fingerprint)
        self.used: set[str] = set()
        self.dirty = False

    def get(self, key: str) -> Any:
        found = self.entries.get(key)
        if found is not None:
            self.used.add(key)
        return found

    def put(self, key: str, verdict: Any) -> None:
        self.entries[key] = verdict
        self.used.add(key)
        self.dirty = True

    def save(self) -> None:
        if not self.path or not self.dirty:
            return
        recent = [key for key in self.entries if key not in self.used] + [
            key for key in self.entries if key in self.used
        ]
        entries = {key: self.entries[key] for key in recent[-CACHE_LIMIT:]}
        write_cache(self.path, self.fingerprint, entries)


@dataclass
class TargetResult:
    key: str
    environment: str
    name: str
    cached: bool
    findings: list[Finding] = field(default_factory=list)


@dataclass
class VerifyReport:
    targets: list[TargetResult]
    failing: list[Finding]
    excepted: list[Excepted]
    unused_exceptions: list[UnusedException]
    checked_by_checkov: int
    # Due soon, not yet refused: a pinned version within 90 days of its end of support.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failing

    @property
    def cache_hits(self) -> int:
        return sum(1 for target in self.targets if target.cached)


def _schema_findings(rendered: Rendered, validator: SchemaValidator) -> list[list[str]]:
    return [
        [f.kind, f.name, f.path, f.message]
        for document in rendered.documents
        for f in validator.check(document)
    ]


def _verdict_findings(rendered: Rendered, verdict: dict[str, Any]) -> list[Finding]:
    findings = [
        Finding(
            rendered.key,
            "SCHEMA",
            f"{kind}/{name}",
            f"{path + ': ' if path else ''}{message}",
            "schema",
        )
        for kind, name, path, message in verdict["schema"]
    ]
    findings += [
        Finding(rendered.key, check, resource, title, "checkov")
        for check, title, resource in verdict["checkov"]
    ]
    return findings


def _canonical(value: Any) -> Any:
    """JSON for what json does not know: sets sorted (their order changes per process)."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


def _digest(value: Any) -> str:
    payload = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(payload.encode()).hexdigest()


def input_key(job: Job, chart_digest: str, fingerprint: str, context: str) -> str:
    """What a target's findings depend on, without rendering it: its render's inputs, what
    the rules read of its environment, and the run's rule context for that environment."""
    environment = job.environment
    return "in:" + _digest(
        [
            fingerprint,
            chart_digest,
            job.values,
            job.release_name,
            job.namespace,
            job.directory,
            environment.name,
            environment.kubernetes_version,
            repr(environment.policy),
            context,
        ]
    )


@dataclass
class _Checked:
    """A target rendered and checked in this run (its inputs were not in the cache)."""

    job: Job
    rendered: Rendered
    inputs: str  # the input key its findings are stored under
    output: str  # the key of its schema and checkov verdict
    verdict: dict[str, Any]
    cached: bool  # the verdict came from the cache (only its inputs changed, e.g. an image)


class _Gate:
    """One run: the caches, the schema validators and the checkov worker its targets share."""

    def __init__(self, repo: Repo, use_cache: bool, progress: Progress | None) -> None:
        self.renderer = Renderer(repo, stored=use_cache)
        self.fingerprint = engine_fingerprint()
        self.rules = rules_fingerprint()
        self.cache = VerdictCache(cache_dir(repo.root) if use_cache else None, self.fingerprint)
        self.validators: dict[str, SchemaValidator] = {}
        self.checkov = CheckovRun()
        self.progress = progress
        self.checked: list[_Checked] = []

    def inputs(self, job: Job, context: Any) -> str:
        chart = self.renderer.chart_digest(job.chart)
        return input_key(job, chart, self.fingerprint + self.rules, _digest(context))

    def check(self, job: Job, inputs: str) -> _Checked:
        """Render; validate schemas now and hand checkov the target, unless cached."""
        rendered = self.renderer.render(job)
        output = cache_key(rendered, self.fingerprint)
        verdict = self.cache.get(output)
        checked = _Checked(job, rendered, inputs, output, verdict or {}, verdict is not None)
        if verdict is None:
            version_ = rendered.environment.kubernetes_version
            validator = self.validators.setdefault(version_, SchemaValidator(version_))
            checked.verdict = {"schema": _schema_findings(rendered, validator), "checkov": []}
            if rendered.name != GITOPS_TARGET:
                # No checkov check reads a CRD, and its graph of a large CRD costs seconds.
                workloads = [d for d in rendered.documents if d.get("kind") != _CRD]
                self.checkov.add(rendered.key, workloads)
        self.checked.append(checked)
        return checked

    def finish(self, context: RuleContext) -> dict[str, list[Finding]]:
        """checkov's verdicts, then the rules: the findings of every target checked."""
        if self.checkov and self.progress:
            self.progress("checkov", 0, len(self.checkov))
        by_key = {target.rendered.key: target for target in self.checked}
        for key, failures in self.checkov.results().items():
            by_key[key].verdict["checkov"] = [[f.check, f.title, f.resource] for f in failures]
        if self.checkov.ids is not None:
            keep_check_ids(self.cache.folder, self.checkov.ids)
        if self.checkov and self.progress:
            self.progress("checkov", len(self.checkov), len(self.checkov))
        findings: dict[str, list[Finding]] = {}
        for target in self.checked:
            if not target.cached:
                self.cache.put(target.output, target.verdict)
            found = _verdict_findings(target.rendered, target.verdict)
            found += run_rules(target.rendered, context)
            found += self.unknown_values(target.job)
            findings[target.rendered.key] = found
            entry = self.cache.get(target.inputs) or {}
            entry["findings"] = [astuple(finding) for finding in found]
            self.cache.put(target.inputs, entry)
        self.cache.save()
        return findings

    def unknown_values(self, job: Job) -> list[Finding]:
        """Values an add-on Application passes that its chart does not define, each with the
        file:line that sets it (a misspelt key would silently do nothing)."""
        if not job.name.startswith(f"{ADDONS_TARGET}/"):
            return []
        repo = self.renderer.repo
        addon = job.name.split("/", 1)[1]
        files = (repo.addons_file(job.environment.name), repo.addons_chart / "values.yaml")
        findings = []
        for dotted in self.renderer.unknown_values(job):
            key_path = ["addons", addon, "values", *dotted.split(".")]
            where = next(
                (
                    located(f, key_path)
                    for f in files
                    if f.is_file() and _has(read_mapping(f), key_path)
                ),
                f"{display_path(repo.addons_chart / 'templates/_facts.tpl')} ({addon}'s facts)",
            )
            chart = self.renderer.lock.get(job.chart.name)
            findings.append(
                Finding(
                    job.key,
                    "VALUES",
                    f"values/{dotted}",
                    f"{where}: {chart.name} {chart.version} has no value '{dotted}': Helm "
                    "ignores it (misspelt, or removed upstream)",
                    "project",
                )
            )
        return findings


def _has(data: Any, key_path: list[str]) -> bool:
    for key in key_path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def _context_of(gitops: Rendered) -> dict[str, Any]:
    """What the rules learn from an environment's Argo CD objects, as cached."""
    return {
        "allowed_kinds": sorted(allowed_kinds(gitops)),
        "source_repos": {name: sorted(repos) for name, repos in source_repos(gitops).items()},
    }


# --- environment-level hook: the twin of each environment's Argo CD sync -------------------


def _twin_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).parent / "twin").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _unmodelled_files(repo: Repo, environment: str) -> list[tuple[str, str]]:
    """The files of an environment's folder that are no release's values (a values file with
    no image line yet, a stray copy): the twin's git files generator reads them as Argo CD
    does, but no target's inputs hold them."""
    releases = {release.values_file for release in repo.select([environment])}
    folder = repo.environment(environment).settings_file.parent
    return sorted(
        (path.relative_to(repo.root).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest())
        for path in folder.rglob("*")
        if path.is_file() and path not in releases
    )


def _twin_input(renderer: Renderer, job: Job, fingerprint: str, blank: bool) -> str:
    """A target's part of its environment's twin key, without rendering it: its render's
    inputs and, for a release, the values file the ApplicationSet's generator reads (which
    can differ where the merged values do not); tags and digests blanked if ``blank``."""
    release = job.release
    own = release.environment_values if release else None
    if blank and release is not None:
        job = replace(job, values=dict(blank_image_values(job.values)))
        own = blank_image_values(release.environment_values)
    chart = renderer.chart_digest(job.chart)
    return _digest([input_key(job, chart, fingerprint, ""), own])


class _TwinKeys:
    """The two keys of an environment's twin findings: the exact inputs of every target, and
    the same with every release's tag and digest blanked (with the blanked documents a
    release renders, which show what else a chart makes of its tag). A finding is stored under
    the blanked key only when the twin modelled it blanked (``twin.images``), so a promotion
    is answered by the findings of the build before it."""

    def __init__(self, gate: _Gate, every: dict[str, Job], fingerprint: str) -> None:
        self.gate = gate
        self.every = every
        self.fingerprint = fingerprint
        self.exact_parts = {
            key: _twin_input(gate.renderer, job, fingerprint, False) for key, job in every.items()
        }
        self.outputs = {target.rendered.key: target.output for target in gate.checked}
        self.rendered = {target.rendered.key: target.rendered for target in gate.checked}

    def exact(self, shared: list[Any]) -> str:
        return "twin:" + _digest([*shared, sorted(self.exact_parts.values())])

    def blanked(self, shared: list[Any]) -> str:
        parts = [
            self._blanked_part(key, job) if job.release is not None else self.exact_parts[key]
            for key, job in self.every.items()
        ]
        return "twin-blanked:" + _digest([*shared, sorted(parts, key=json.dumps)])

    def render(self, job: Job) -> Rendered:
        """Each target rendered at most once per run (a stored render is a file read)."""
        if job.key not in self.rendered:
            self.rendered[job.key] = self.gate.renderer.render(job)
        return self.rendered[job.key]

    def _blanked_part(self, key: str, job: Job) -> list[str]:
        """A release's blanked inputs and its documents as blanked (their verdict key), kept
        by its exact inputs: a promotion computes them for its own release only."""
        kept = "blanked:" + self.exact_parts[key]
        part = self.gate.cache.get(kept)
        if key in self.outputs or not isinstance(part, list):
            output = self.outputs.get(key) or cache_key(self.render(job), self.gate.fingerprint)
            part = [_twin_input(self.gate.renderer, job, self.fingerprint, True), output]
        self.gate.cache.put(kept, part)
        return [str(item) for item in part]


def _twin_findings(
    gate: _Gate, repo: Repo, stacks: dict[str, StackFacts | None], jobs: list[Job]
) -> dict[str, list[Finding]]:
    """The twin's findings per target, for each environment verified. The twin needs the whole
    environment, so its findings are keyed on the inputs of every target of it (and the stack
    facts): when none changed, nothing is rendered; when only tags and digests that nothing
    reads changed, only the releases whose blanked documents are not kept yet (a promotion's
    own) are; otherwise every target this run did not render is rendered now."""
    renderer = gate.renderer
    # the twin's code and the gate's engines (the pinned CRDs it reads included)
    fingerprint = _twin_fingerprint() + gate.fingerprint
    found: dict[str, list[Finding]] = {}
    for name, stack in stacks.items():
        environment = repo.environment(name)
        every = {job.key: job for job in jobs if job.environment.name == name}
        for job in (
            renderer.gitops_job(environment),
            renderer.addons_job(environment),
            *renderer.addon_chart_jobs(environment),
            *(renderer.release_job(release) for release in repo.select([name])),
        ):
            every.setdefault(job.key, job)
        keys = _TwinKeys(gate, every, fingerprint)
        shared = [fingerprint, stack.as_key() if stack else None, _unmodelled_files(repo, name)]
        exact = keys.exact(shared)
        entry = gate.cache.get(exact)
        if entry is None:
            # --no-cache: nothing to answer from, so nothing to key
            blanked = keys.blanked(shared) if gate.cache.folder else None
            entry = gate.cache.get(blanked) if blanked else None
            if entry is None:
                targets = {
                    job.key: Target(keys.render(job), str(job.chart.relative_to(repo.root)))
                    for job in every.values()
                }
                unread = images_unread(targets)
                modelled = check_environment(
                    repo, environment, targets, stack, images_blanked=unread
                )
                entry = {"findings": [astuple(finding) for finding in modelled]}
                if unread and blanked:
                    gate.cache.put(blanked, entry)
            gate.cache.put(exact, entry)
        for finding in (Finding(*item) for item in entry["findings"]):
            found.setdefault(finding.target, []).append(finding)
    return found


# --- end of the environment-level hook --------------------------------------------------------


def _explained(
    renderer: Renderer,
    unused: list[PolicyException],
    verified: Iterable[str],
    cache: Path | None,
) -> list[UnusedException]:
    """Each unused exception with why it matched nothing, against every check id an engine
    can report and every target the repository renders (not only this run's selection). One
    whose targets this run did not verify is left out unless it names nothing that exists:
    its check was not run there, so nothing shows it is unused."""
    if not unused:
        return []
    repo = renderer.repo
    checks = {rule.id for rule in rule_set.RULES} | set(TWIN_CHECKS) | set(check_ids(cache))
    checks |= {EXPIRED_CHECK, "SCHEMA", "VALUES"}
    targets = set()
    for name in repo.environment_names:
        environment = repo.environment(name)
        jobs = [renderer.gitops_job(environment), renderer.addons_job(environment)]
        jobs += renderer.addon_chart_jobs(environment)
        targets |= {job.key for job in jobs}
        # a release's key needs no job (whose values and paths cost ~0.2 ms each)
        targets |= {target_key(name, release.service) for release in repo.select([name])}
    keys = list(verified)
    explained = [why_unused(exception, checks, REPLACED_CHECKS, targets) for exception in unused]
    return [
        item
        for item in explained
        if not item.stale or any(item.exception.covers(key) for key in keys)
    ]


def verify(
    repo: Repo,
    environments: Iterable[str] = (),
    services: Iterable[str] = (),
    *,
    use_cache: bool = True,
    progress: Progress | None = None,
    today: dt.date | None = None,
) -> VerifyReport:
    """Run the whole gate over the selected releases and their environments' Argo CD objects."""
    releases = repo.select(environments, services)
    exceptions = load_exceptions(repo.exceptions_file, repo.root)
    gate = _Gate(repo, use_cache, progress)
    renderer = gate.renderer
    env_names = [repo.environment(name).name for name in environments] or list(
        repo.environment_names
    )
    objectives = gate_objectives(repo)
    context = RuleContext(objectives=objectives)
    stacks = {name: stack_facts(repo, repo.environment(name)) for name in env_names}
    context.network_policy.update(
        {name: stack.network_policy if stack else None for name, stack in stacks.items()}
    )
    answered: dict[str, list[Finding]] = {}  # targets the input cache answered, by key
    order: list[str] = []
    jobs: list[Job] = []
    # The Argo CD objects are always read (their AppProjects are the rules' context) but are
    # a target of their own only when whole environments are verified.
    for name in env_names:
        environment = repo.environment(name)
        job = renderer.gitops_job(environment)
        inputs = gate.inputs(job, objectives[name])
        entry = gate.cache.get(inputs)
        if entry is None or not {"context", "findings"} <= set(entry):
            entry = {"context": _context_of(gate.check(job, inputs).rendered)}
            gate.cache.put(inputs, entry)
        elif not services:
            answered[job.key] = [Finding(*item) for item in entry["findings"]]
        facts = entry["context"]
        context.allowed_kinds[name] = frozenset(tuple(kind) for kind in facts["allowed_kinds"])
        context.source_repos[name] = {k: frozenset(v) for k, v in facts["source_repos"].items()}
        if not services:
            order.append(job.key)
            jobs.append(renderer.addons_job(environment))
            # and every upstream chart an add-on Application deploys, as it deploys it
            jobs += renderer.addon_chart_jobs(environment)
    jobs += [renderer.release_job(release) for release in releases]
    for index, job in enumerate(jobs, 1):
        name = job.environment.name
        order.append(job.key)
        facts = [
            context.allowed_kinds[name],
            context.source_repos[name],
            objectives[name],
            context.network_policy[name],
        ]
        inputs = gate.inputs(job, facts)
        entry = gate.cache.get(inputs)
        if entry is not None and "findings" in entry:
            answered[job.key] = [Finding(*item) for item in entry["findings"]]
        else:
            gate.check(job, inputs)
        if progress:
            progress("render", index, len(jobs))
    twin = _twin_findings(gate, repo, stacks, jobs)
    checked = gate.finish(context)
    reused = {target.rendered.key for target in gate.checked if target.cached}

    sources = ValueSources(repo.service_chart, releases)
    results = [
        TargetResult(
            key=key,
            environment=key.split("/", 1)[0],
            name=key.split("/", 1)[1],
            cached=key in answered or key in reused,
            findings=sorted(
                sources.pointed(finding)
                for finding in (answered[key] if key in answered else checked[key])
                + twin.get(key, [])
            ),
        )
        for key in order
    ]
    all_findings = [finding for result in results for finding in result.findings]
    day = today or dt.date.today()
    # The stacks are whole-environment targets, like the Argo CD objects.
    stack_problems, warnings = stack_findings(repo, [] if services else env_names, day)
    failing, excepted, unused = apply_exceptions(
        sorted(all_findings + stack_problems), exceptions, day, repo.exceptions_file
    )
    return VerifyReport(
        targets=results,
        failing=failing,
        excepted=excepted,
        unused_exceptions=_explained(renderer, unused, order, gate.cache.folder),
        checked_by_checkov=len(gate.checkov),
        warnings=warnings,
    )

"""checkov's Kubernetes checks, run in a worker process over every target not cached.

Importing checkov costs ~3 s, so the worker starts only when some target needs checking, and
imports checkov while the gate renders and validates the rest. Each
target is given a namespace of its own in checkov's input so that graph checks (such as
"every pod has a NetworkPolicy") see one release at a time: a verdict then depends only on that
release's manifests, which is what makes caching it per release sound.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from platformctl.cachefile import read_cache, write_cache
from platformctl.errors import EnvironmentProblem

# checkov checks that project rules replace, because the answer depends on the environment:
# dev deploys tags that CI pushed, staging and production must pin digests.
REPLACED_CHECKS: Mapping[str, str] = {
    "CKV_K8S_43": "PLAT001 (digest required per environment)",
    "CKV_K8S_14": "PLAT002 (no latest or missing tag)",
}


@dataclass(frozen=True)
class CheckovFailure:
    check: str
    title: str
    resource: str  # Kind/name


def checkov_version() -> str:
    from importlib.metadata import version

    return version("checkov")


CHECK_IDS_FILE = "checkov-check-ids.json"


def check_ids(cache: Path | None = None) -> frozenset[str]:
    """Every id checkov's Kubernetes framework can report: its resource checks' registry and
    its graph checks' definitions. Importing the registry costs most of a second, which an
    unused exception would make every promotion pay, so the ids are kept in ``cache`` (a
    folder) per checkov version and installation, by the first gate that runs checkov or
    else by the first call."""
    cached = read_cache(cache / CHECK_IDS_FILE if cache else None, _ids_fingerprint()).get("ids")
    if isinstance(cached, list) and all(isinstance(item, str) for item in cached):
        return frozenset(cached)
    ids = registry_ids()
    keep_check_ids(cache, ids)
    return ids


def registry_ids() -> frozenset[str]:
    """The ids from checkov's own registry (imports it: cheap only where checkov runs)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import checkov.kubernetes.checks.resource  # noqa: F401 (registers every check)
        from checkov.kubernetes.checks import graph_checks
        from checkov.kubernetes.checks.resource.registry import registry
    checks = [*registry.checks.values(), *registry.wildcard_checks.values()]
    ids = {check.id for group in checks for check in group}
    for graph in Path(str(graph_checks.__file__)).parent.glob("*.json"):
        ids.add(json.loads(graph.read_text())["metadata"]["id"])
    return frozenset(ids)


def keep_check_ids(cache: Path | None, ids: frozenset[str]) -> None:
    """Keep ``ids`` in ``cache`` (a folder; None: keep nothing) unless kept already."""
    if cache is None:
        return
    path = cache / CHECK_IDS_FILE
    fingerprint = _ids_fingerprint()
    if read_cache(path, fingerprint).get("ids") != sorted(ids):
        write_cache(path, fingerprint, {"ids": sorted(ids)})


def _ids_fingerprint() -> str:
    return f"{checkov_version()}:{_checkov_folder()}"


def _checkov_folder() -> str:
    """Where checkov is installed, without importing it (its package's import is the cost)."""
    from importlib.util import find_spec

    spec = find_spec("checkov")
    return str(spec.origin) if spec else ""


def _checkable(document: dict[str, Any]) -> dict[str, Any]:
    """checkov's pod checks know Deployments but not Argo Rollouts; a Rollout's pod template is
    a Deployment's, so it is checked as one (and reported as the Rollout)."""
    if document.get("kind") != "Rollout":
        return document
    spec = document.get("spec") or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": document.get("metadata") or {},
        "spec": {key: spec[key] for key in ("replicas", "selector", "template") if key in spec},
    }


def _isolated(documents: Sequence[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    isolated = []
    for document in documents:
        checkable = _checkable(document)
        metadata = dict(checkable.get("metadata") or {})
        metadata["namespace"] = namespace
        isolated.append({**checkable, "metadata": metadata})
    return isolated


def _rollouts(documents: Sequence[dict[str, Any]]) -> frozenset[str]:
    return frozenset(
        str((d.get("metadata") or {}).get("name")) for d in documents if d.get("kind") == "Rollout"
    )


_CHECKOV = "checkov.kubernetes.runner"
# checkov's graph links every resource to every other by label selector (quadratic in the
# resources of one run), so targets are checked in batches: measured fastest at about 50.
BATCH = 50


def _names(path: str) -> set[tuple[str, str]]:
    """The (kind, name) of each document of a file ``CheckovRun`` wrote."""
    names = set()
    for line in Path(path).read_text().splitlines():
        if line.startswith("{"):
            document = json.loads(line)
            names.add(
                (str(document.get("kind")), str((document.get("metadata") or {}).get("name")))
            )
    return names


class _Batches:
    """Targets grouped for one checkov run each: at most BATCH, and never two targets with a
    resource of the same kind and name. checkov's graph names the pods it derives by their
    labels, not their namespace, so two environments' copies of one add-on in a run shared
    one graph node: a NetworkPolicy of one target covered (or failed to cover) the other's
    pods, and a graph check's verdict depended on which targets a batch happened to hold."""

    def __init__(self) -> None:
        self.current: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def add(self, path: str) -> list[str] | None:
        """Add ``path``; the batch it closed, if adding it had to close one."""
        names = _names(path)
        closed = None
        if self.current and (len(self.current) == BATCH or names & self.seen):
            closed = self.flush()
        self.current.append(path)
        self.seen |= names
        return closed

    def flush(self) -> list[str]:
        closed, self.current, self.seen = self.current, [], set()
        return closed


def _in_batches(paths: Sequence[str]) -> list[list[str]]:
    batches = _Batches()
    found = [closed for path in paths if (closed := batches.add(path))]
    return [*found, batches.flush()] if batches.current else found


def _definitions(
    root_folder: str | None, files: list[str] | None = None, runner_filter: Any = None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[tuple[int, str]]]]:
    """checkov's ``create_definitions`` for the files ``CheckovRun`` writes (one JSON document
    a line): the same mappings, line marks included, that its YAML loader makes, but parsed
    by json in C instead of a YAML parser in Python in forked workers (two thirds of its time).
    """
    from checkov.kubernetes.parser.validatior import K8sValidator

    definitions: dict[str, list[dict[str, Any]]] = {}
    raw: dict[str, list[tuple[int, str]]] = {}
    for name in files or []:
        lines = Path(name).read_text().splitlines(keepends=True)
        documents = []
        for number, line in enumerate(lines, 1):
            if not line.startswith("{"):
                continue

            def marked(mapping: dict[str, Any], number: int = number) -> dict[str, Any]:
                return {**mapping, "__startline__": number, "__endline__": number}

            document = json.loads(line, object_hook=marked)
            if K8sValidator.is_valid_template(document)[0]:
                documents.append(document)
        definitions[name] = documents
        raw[name] = list(enumerate(lines, 1))
    return definitions, raw


def check_files(paths: Sequence[str]) -> list[list[str]]:
    """checkov over files ``CheckovRun`` wrote: ``[file, check, title, Kind.namespace.name]``."""
    logging.getLogger("checkov").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        from checkov.kubernetes import runner
        from checkov.kubernetes.runner import Runner
        from checkov.runner_filter import RunnerFilter

        runner.create_definitions = _definitions  # type: ignore[attr-defined]

        report: Any = Runner().run(
            root_folder=None,
            files=list(paths),
            runner_filter=RunnerFilter(framework=["kubernetes"], skip_checks=list(REPLACED_CHECKS)),
        )
    reports = report if isinstance(report, list) else [report]
    return [
        [str(f.file_abs_path), f.check_id, str(f.check_name), str(f.resource)]
        for each in reports
        for f in each.failed_checks
    ]


class CheckovRun:
    """checkov in a process of its own, checking targets while the caller renders the next.

    The first ``add`` starts ``python -m platformctl.policy.checkov_engine``, which imports
    checkov (~3 s) while this process goes on rendering; targets reach it as files, a path a
    line, and it checks them in batches as they come. ``results`` waits for the verdicts.
    A process that has imported checkov already (a test session, a long-lived caller) checks
    in-process instead: the worker would only pay the import again.
    """

    def __init__(self) -> None:
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[str] | None = None
        self._errors: IO[str] | None = None
        self._files: dict[str, str] = {}
        self._rollouts: dict[str, frozenset[str]] = {}
        # every check id checkov can report, once it ran: it has imported the registry
        self.ids: frozenset[str] | None = None

    def __len__(self) -> int:
        return len(self._files)

    def add(self, key: str, documents: Sequence[dict[str, Any]]) -> None:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="platform-checkov-")
        if self._process is None and _CHECKOV not in sys.modules:
            # checkov may log a lot: a file, so that a full pipe never stalls the worker
            self._errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by results)
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                text=True,
            )
        index = len(self._files)
        path = Path(self._folder.name, f"t{index}.yaml")
        # JSON is YAML, and json writes it ~20 times faster than a YAML dumper
        path.write_text(
            "".join(f"---\n{json.dumps(d)}\n" for d in _isolated(documents, f"t{index}"))
        )
        self._files[str(path)] = key
        self._rollouts[key] = _rollouts(documents)
        if self._process is not None and self._process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # a crash is reported by results()
                self._process.stdin.write(f"{path}\n")
                self._process.stdin.flush()

    def results(self) -> dict[str, list[CheckovFailure]]:
        """Failures per target key; every target added is present in the result."""
        results: dict[str, list[CheckovFailure]] = {key: [] for key in self._files.values()}
        if self._folder is None:
            return results
        try:
            failures = self._in_process() if self._process is None else self._from_worker()
        finally:
            self._folder.cleanup()
            if self._errors is not None:
                self._errors.close()
        for path, check, title, resource in failures:
            target = self._files[path]
            kind, _namespace, name = resource.split(".", 2)
            if kind == "Deployment" and name in self._rollouts[target]:
                kind = "Rollout"
            results[target].append(CheckovFailure(check, title, f"{kind}/{name}"))
        return results

    def _in_process(self) -> list[list[str]]:
        self.ids = registry_ids()
        return [
            failure for batch in _in_batches(list(self._files)) for failure in check_files(batch)
        ]

    def _from_worker(self) -> list[list[str]]:
        assert self._process is not None
        assert self._errors is not None
        out, _ = self._process.communicate()
        self._errors.seek(0)
        errors = self._errors.read()
        if self._process.returncode != 0:
            last = (errors.strip().splitlines() or ["no output"])[-1]
            raise EnvironmentProblem(
                f"checkov failed (exit {self._process.returncode}): {last}",
                hint="run `platform verify --debug`; reinstall with `uv sync` if checkov is broken",
            )
        reported = json.loads(out)
        self.ids = frozenset(reported["ids"])
        failures: list[list[str]] = reported["failures"]
        return failures


def _serve() -> None:
    """The worker: import checkov first, then check the files named on stdin, in batches;
    report the failures and every check id (the registry is imported already)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import checkov.kubernetes.runner  # noqa: F401 (the slow part, done before any input)
    failures: list[list[str]] = []
    batches = _Batches()
    for line in sys.stdin:
        if closed := batches.add(line.strip()):
            failures += check_files(closed)
    if batches.current:
        failures += check_files(batches.flush())
    json.dump({"failures": failures, "ids": sorted(registry_ids())}, sys.stdout)


if __name__ == "__main__":
    _serve()

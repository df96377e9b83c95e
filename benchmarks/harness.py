"""Timed runs on a fleet: each command is a process of its own, timed from start to exit.

Wall time includes the interpreter's start, as a user or a CI job sees it. Peak memory is the
largest resident set of the process and the children it waited for (``wait4``'s ``ru_maxrss``).
Commands that change the repository run from the same commit each time (``git reset --hard``
between runs, outside the timing). The dashboard's rows are the exception: they time requests
to one started ``platform serve`` (``benchmarks.serve``), as its users meet it.

Every process reads compiled bytecode, as an installed command does after its first run: a
shell that sets ``PYTHONDONTWRITEBYTECODE`` would otherwise make each measured process compile
every module it imports again (about 0.3 s of a promotion). The bytecode is kept in
``PYCACHE`` (``PYTHONPYCACHEPREFIX``), outside the project, so only a machine's first run
compiles; repeated measurements also make one unmeasured run first.
"""

from __future__ import annotations

import json
import os
import platform as host
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from benchmarks.fleet import PROJECT_ROOT, Fleet, generate
from platformctl.cachefile import reading_only
from platformctl.gates.config import NETWORK_GATES
from platformctl.model import Environment, load_repo

PYCACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "platform-benchmarks"
    / "pycache"
)


class BenchmarkError(RuntimeError):
    """A measured command failed: its time would mean nothing."""


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_mb: float


@dataclass(frozen=True)
class Goal:
    """``seconds <= limit`` or, with ``of``, ``seconds <= limit * (the median of 'of')``."""

    limit: float
    of: str | None = None
    text: str = ""


@dataclass
class Result:
    name: str
    what: str
    samples: list[Sample]
    goal: Goal | None = None
    ratio_to: dict[str, float] = field(default_factory=dict)
    met: bool | None = None

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def peak_mb(self) -> float:
        return max(s.peak_mb for s in self.samples)


def tool(name: str) -> str:
    """A console script of this environment (the one running the harness), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise BenchmarkError(f"{name} is not installed: run `uv sync` in the project first")
    return found


def run_timed(command: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[Sample, str]:
    """Run one command to completion; its wall time, peak memory and output."""
    with tempfile.TemporaryFile() as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=output)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise BenchmarkError(f"`{' '.join(command)}` exited {process.returncode}:\n{tail}")
    return Sample(seconds, usage.ru_maxrss / 1024), text


def combined(samples: Sequence[Sample]) -> Sample:
    """Commands run one after the other: their times add up, their peaks do not."""
    return Sample(sum(s.seconds for s in samples), max(s.peak_mb for s in samples))


@dataclass
class Bench:
    fleet: Fleet
    env: dict[str, str]
    results: dict[str, Result] = field(default_factory=dict)
    # the rows to measure (with those their goals compare with); None: every row
    only: frozenset[str] | None = None

    def wanted(self, name: str) -> bool:
        if name not in ROWS:
            raise ValueError(f"{name} is not a row of ROWS")
        return self.only is None or name in self.only

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.fleet.root), *args], capture_output=True, text=True, check=True
        ).stdout

    def run(self, *command: str) -> Sample:
        return run_timed(command, self.fleet.root, self.env)[0]

    def platform(self, *args: str) -> Sample:
        return self.run(tool("platform"), *args)

    def measure(
        self,
        name: str,
        what: str,
        once: Callable[[int], Sample],
        *,
        runs: int,
        prepare: Callable[[int], None] | None = None,
        goal: Goal | None = None,
    ) -> Result | None:
        """``runs`` runs of ``once``, after an unmeasured one when ``runs`` > 1; ``prepare``
        sets each run up outside the timing. None if the row is not selected."""
        if not self.wanted(name):
            return None
        # what the fleet's making and the rows before wrote is on disk first: the kernel's
        # writeback of it slowed the next short commands 3-fold (the floor's first samples)
        os.sync()
        if runs > 1:
            if prepare:
                prepare(runs)
            once(runs)
        samples = []
        for run in range(runs):
            if prepare:
                prepare(run)
            samples.append(once(run))
        result = Result(name, what, samples, goal)
        self.results[name] = result
        return result

    @contextmanager
    def worker(self) -> Iterator[None]:
        """A started worker (``platform worker start``) for what runs inside; it must have
        run every ``platform`` command of that time, or the figures would be of the cold way."""
        self.platform("worker", "start")
        served = self._worker_commands()
        try:
            yield
            ran = self._worker_commands() - served
        finally:
            self.platform("worker", "stop")
        expected = sum(
            len(r.samples) + (len(r.samples) > 1)
            for r in self.results.values()
            if r.name.endswith(WORKER_SUFFIX)
        )
        if ran != expected:
            raise BenchmarkError(f"the worker ran {ran} of {expected} commands")

    def _worker_commands(self) -> int:
        status = [tool("platform"), "worker", "status", "-o", "json"]
        in_process = {**self.env, "PLATFORM_WORKER": "off"}  # or it would count itself
        shown = json.loads(run_timed(status, self.fleet.root, in_process)[1])
        if not shown["running"]:
            raise BenchmarkError("the worker is not running")
        return int(shown["commands"])

    def reset_to(self, commit: str) -> Callable[[int], None]:
        def reset(_: int) -> None:
            self.git("reset", "--quiet", "--hard", commit)

        return reset

    def usual_way(self, out: Path) -> Sample:
        """Render to files, kubernetes-validate them per Kubernetes version, checkov -d."""
        shutil.rmtree(out, ignore_errors=True)
        render, printed = run_timed(
            [sys.executable, "-m", "benchmarks.usual", str(self.fleet.root), str(out)],
            self.fleet.root,
            self.env,
        )
        steps = [render]
        for kubernetes, files in json.loads(printed).items():
            validate = [tool("kubernetes-validate"), "--quiet", "--strict", "-k", kubernetes]
            steps.append(self.run(*validate, *files))
        checkov = [tool("checkov"), "-d", str(out), "--framework", "kubernetes", "--quiet"]
        steps.append(self.run(*checkov, "--compact", "--soft-fail"))
        return combined(steps)


def offline_gates(target: Environment) -> tuple[str, ...]:
    """The options of a promotion into ``target``: the gates it declares that ask the network
    (this repository's second stage: its registry and Argo CD) cannot be reached here, so they
    are overridden (with the reason recorded, as a user would) and every other step (plan,
    edit, local gates, render, policy gate, commit) runs as it does for a user."""
    network = [gate for gate in target.gates.names if gate in NETWORK_GATES]
    if not network:
        return ()
    return (*(part for gate in network for part in ("--override", gate)), "--reason", "benchmark")


GOALS = {
    "verify_full": Goal(0.25, of="usual_way", text="≤ ¼ of the usual tools"),
    "verify_unchanged": Goal(1.0, text="≤ 1 s"),
    "verify_one_changed": Goal(1 / 3, of="verify_full", text="≤ ⅓ of the full gate"),
    "promote_one": Goal(3.0, of="floor", text="≤ 3 times the floor"),
    "promote_all": Goal(5.0, of="floor", text="≤ 5 times the floor"),
    "rollback": Goal(4.0, of="floor", text="≤ 4 times the floor"),
    "metrics": Goal(2.0, of="rollback", text="≤ 2 times the rollback"),
    "serve_matrix_warm": Goal(2.0, of="status", text="≤ 2 times platform status"),
}
# The same release commands again, with `platform worker start` run first (outside the timing).
WORKER_SUFFIX = "_worker"
GOALS.update(
    {f"{name}{WORKER_SUFFIX}": GOALS[name] for name in ("promote_one", "promote_all", "rollback")}
)
# Every row, in the order it is measured.
ROWS = (
    "usual_way",
    "verify_full",
    "verify_unchanged",
    "verify_one_changed",
    "floor",
    "promote_one",
    "promote_all",
    "rollback",
    "metrics",
    "status",
    "serve_matrix_cold",
    "serve_matrix_warm",
    *(f"{name}{WORKER_SUFFIX}" for name in ("promote_one", "promote_all", "rollback")),
)


def with_references(names: Iterable[str]) -> frozenset[str]:
    """``names`` and the rows their goals compare with, and theirs: what a selection runs."""
    selected = set(names)
    unread = list(selected)
    while unread:
        goal = GOALS.get(unread.pop())
        if goal and goal.of and goal.of not in selected:
            selected.add(goal.of)
            unread.append(goal.of)
    return frozenset(selected)


def verified_start(bench: Bench, start: str, snapshot: Path) -> Callable[[int], None]:
    """Before each run of a release command: the fleet at ``start`` with the caches that
    ``platform verify`` of it left (as CI leaves them), so each run renders the targets its
    change made, as the first promotion of a build does. A run that found the previous run's
    renders stored would measure a promotion no user makes."""
    cache = bench.fleet.root / ".platform-cache"
    bench.reset_to(start)(0)
    bench.platform("verify")
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(cache, snapshot)

    def prepare(run: int) -> None:
        bench.reset_to(start)(run)
        shutil.rmtree(cache)
        shutil.copytree(snapshot, cache)

    return prepare


def scenarios(bench: Bench, scratch: Path, runs: int) -> None:
    """Every measurement, in an order where each leaves the fleet as the next expects."""
    fleet = bench.fleet
    cache = fleet.root / ".platform-cache"
    stages = fleet.environments
    service = fleet.services[len(fleet.services) // 2]
    with reading_only():  # no cache warmed before the first measurement
        offline = offline_gates(load_repo(fleet.root).environment(stages[1]))
    bench.measure(
        "usual_way",
        "render to files + kubernetes-validate + checkov -d",
        lambda _: bench.usual_way(scratch / "manifests"),
        runs=1,
    )
    bench.measure(
        "verify_full",
        "platform verify, nothing cached",
        lambda _: bench.platform("verify"),
        runs=1,
        prepare=lambda _: shutil.rmtree(cache, ignore_errors=True),
    )
    bench.measure(
        "verify_unchanged",
        "platform verify, nothing changed",
        lambda _: bench.platform("verify"),
        runs=runs,
    )
    start = bench.git("rev-parse", "HEAD").strip()
    values = fleet.root / "environments" / stages[0] / f"{service}.yaml"

    def appending(path: Path, text: Callable[[int], str]) -> Callable[[int], None]:
        """Before run N: the fleet at the start, with ``text(N)`` appended to ``path``."""

        def prepare(run: int) -> None:
            bench.reset_to(start)(run)
            with path.open("a") as handle:
                handle.write(text(run))

        return prepare

    bench.measure(
        "verify_one_changed",
        f"platform verify, one value of {service} in {stages[0]} changed",
        lambda _: bench.platform("verify"),
        runs=runs,
        # a value no run has seen before: the service's manifests must be checked again
        prepare=appending(
            values, lambda run: f'podAnnotations:\n  benchmark/run: "{run}-{time.time_ns()}"\n'
        ),
    )
    floor_file = fleet.root / "environments" / stages[-1] / f"{service}.yaml"
    bench.measure(
        "floor",
        "a Python start plus one `git commit` of one file",
        lambda run: combined(
            [
                bench.run(sys.executable, "-c", "pass"),
                bench.run("git", "commit", "--quiet", "-m", f"floor {run}", "--", str(floor_file)),
            ]
        ),
        runs=runs,
        prepare=appending(floor_file, lambda run: f"# floor run {run}\n"),
    )
    commands = {
        "promote_one": (
            f"platform promote {service} --to {stages[1]}",
            ("promote", service, "--to", stages[1], *offline),
        ),
        "promote_all": (
            f"platform promote --all --to {stages[1]} ({len(fleet.services)} services)",
            ("promote", "--all", "--to", stages[1], *offline),
        ),
        "rollback": (
            f"platform rollback {service} --env {stages[-1]} ({fleet.commits} commits)",
            ("rollback", service, "--env", stages[-1], "--reason", "benchmark"),
        ),
    }

    def command(args: tuple[str, ...]) -> Callable[[int], Sample]:
        return lambda _: bench.platform(*args)

    release_rows = [f"{name}{suffix}" for name in commands for suffix in ("", WORKER_SUFFIX)]
    at_start = (
        verified_start(bench, start, scratch / "cache-at-start")
        if any(bench.wanted(row) for row in release_rows)
        else bench.reset_to(start)
    )

    def release_commands(suffix: str, how: str) -> None:
        for name, (what, args) in commands.items():
            bench.measure(
                f"{name}{suffix}",
                f"{what}{how}",
                command(args),
                runs=runs,
                prepare=at_start,
            )

    release_commands("", "")
    # the whole history: the fleet's first commit opens the window
    first = bench.git("log", "--max-parents=0", "--format=%cI", "HEAD").split()[0]
    bench.measure(
        "metrics",
        f"platform metrics, every environment since {first[:10]} ({fleet.commits} commits)",
        lambda _: bench.platform("metrics", "--since", first),
        runs=runs,
        prepare=bench.reset_to(start),
    )
    dashboard(bench, runs)
    if any(bench.wanted(name) for name in ROWS if name.endswith(WORKER_SUFFIX)):
        with bench.worker():
            release_commands(WORKER_SUFFIX, ", through a started worker")
    bench.reset_to(start)(0)
    for name, goal in GOALS.items():
        if name not in bench.results:
            continue  # not selected
        result = bench.results[name]
        result.goal = goal
        limit = goal.limit * (bench.results[goal.of].seconds if goal.of else 1.0)
        result.met = result.seconds <= limit
        if goal.of:
            result.ratio_to[goal.of] = result.seconds / bench.results[goal.of].seconds


def dashboard(bench: Bench, runs: int) -> None:
    """``platform status`` as users run it, then the matrix page of a started ``platform
    serve``: its first request (which loads the model and builds the page's views once for
    this head) and the requests after it, served from that cache, as a dashboard left open
    and reloaded is."""
    fleet = bench.fleet
    size = f"{len(fleet.services)} services x {len(fleet.environments)} environments"
    bench.measure(
        "status",
        f"platform status ({size}, {fleet.commits} commits)",
        lambda _: bench.platform("status"),
        runs=runs,
    )
    if not (bench.wanted("serve_matrix_cold") or bench.wanted("serve_matrix_warm")):
        return
    from benchmarks.serve import served  # it imports this module's Sample and errors

    command = [tool("platform"), "serve", "--repo", str(fleet.root), "--port", "0"]
    # the server does the work itself, never a worker's
    with served(command, fleet.root, {**bench.env, "PLATFORM_WORKER": "off"}) as server:
        bench.measure(
            "serve_matrix_cold",
            "GET / of a started platform serve: the first, which builds the page",
            lambda _: server.matrix(fleet.services),
            runs=1,
        )
        if "serve_matrix_cold" not in bench.results:
            server.matrix(fleet.services)  # the warm-up the cold row would have been
        bench.measure(
            "serve_matrix_warm",
            "GET / again, served warm (same head; a new connection each, as a reload)",
            lambda _: server.matrix(fleet.services),
            runs=runs,
        )


def machine() -> dict[str, object]:
    """What the figures were taken on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        host.processor() or "unknown",
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "system": f"{host.system()} {host.release()}",
        "python": host.python_version(),
        "git": subprocess.run(
            ["git", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "versions": {
            name: version(name) for name in ("platformctl", "checkov", "kubernetes-validate")
        },
    }


def run_all(
    services: int,
    history: int,
    runs: int,
    workdir: Path,
    progress: Callable[[str], None] = lambda _: None,
    only: Iterable[str] | None = None,
    source: Path = PROJECT_ROOT,
) -> dict[str, object]:
    """Generate a fleet of ``source``'s services in ``workdir``, measure everything (or the
    rows ``only`` names, with those their goals compare with), and return the report."""
    started = time.perf_counter()
    fleet = generate(workdir / "fleet", services, history, source=source)
    generated = time.perf_counter() - started
    progress(f"fleet: {services} services, {fleet.commits} commits, made in {generated:.1f} s")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PLATFORM_", "ARGOCD_", "PROMETHEUS_", "GITHUB_"))
    }
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    # a worker of its own (see Bench.worker), never one the user started: the cold figures
    # are of commands with no worker running
    env["XDG_RUNTIME_DIR"] = str(workdir)
    bench = Bench(fleet, env, only=None if only is None else with_references(only))
    scenarios(bench, workdir, runs)
    return {
        "machine": machine(),
        "fleet": {
            "source": str(source),
            "services": len(fleet.services),
            "environments": list(fleet.environments),
            "commits": fleet.commits,
            "generated_seconds": round(generated, 3),
        },
        "runs": runs,
        "only": sorted(bench.only) if bench.only is not None else None,
        "results": [
            {
                "name": r.name,
                "what": r.what,
                "seconds": round(r.seconds, 3),
                "samples": [round(s.seconds, 3) for s in r.samples],
                "peak_mb": round(r.peak_mb, 1),
                "goal": r.goal and r.goal.text,
                "ratio": {k: round(v, 3) for k, v in r.ratio_to.items()},
                "met": r.met,
            }
            for r in bench.results.values()
        ],
    }

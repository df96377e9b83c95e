"""A synthetic fleet: a repository (this one unless ``source`` names another) with N services
in each environment and a long history.

The services are copies of the source's own, in blocks of as many (``api-gateway-07``,
``user-service-07``, …) whose references to each other (URLs, network policies, roles, hosts)
are renamed within the block, so every values file has the shape of a real one. The history is
a simulation of a team's work, written by one ``git fast-import`` stream instead of thousands of
``git commit`` processes:

- CI builds a new image and writes it into dev (a hand edit, no trailers);
- promotions from each stage into the next (dev → staging → production here), as
  ``platform promote`` writes them (trailers);
- rollbacks in the stages after the first, with the trailers ``platform rollback`` writes;
- hand edits of other values (replicas, an environment variable).

It ends with every service newer in each stage than in the next, so ``promote --all`` into
the second stage has a change for every service.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from platformctl.imagefile import with_image
from platformctl.model import BASE_DIR, ENVIRONMENTS_DIR, Image, Repo, load_repo

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What of this repository the fleet copies (its services are replaced by synthetic ones).
COPIED = ("charts", ENVIRONMENTS_DIR)
_HOST = re.compile(r"^(?P<key>\s*host: )(?P<name>[a-z0-9-]+)\.", re.MULTILINE)
_LOG_LEVEL = re.compile(r"^(?P<key>\s+LOG_LEVEL: )(?P<level>\w+)$", re.MULTILINE)
_NEXT_LEVEL = {"debug": "info", "info": "warning", "warning": "debug"}
_START = 1_704_067_200  # 2024-01-01T00:00:00Z: the simulated history begins
_AUTHORS = (
    ("CI", "ci@acme-corp.example"),
    ("Ada Platform", "ada@acme-corp.example"),
    ("Grace Oncall", "grace@acme-corp.example"),
    ("Linus Release", "linus@acme-corp.example"),
)


@dataclass(frozen=True)
class Fleet:
    root: Path
    services: tuple[str, ...]
    environments: tuple[str, ...]
    commits: int


@dataclass
class _Service:
    """One service's simulated versions: what each environment runs, and what it ran."""

    name: str
    repository: str
    builds: int = 0
    running: dict[str, int] = field(default_factory=dict)
    previous: dict[str, list[int]] = field(default_factory=dict)

    def image(self, build: int) -> Image:
        major, minor, patch = 1 + build // 100, (build // 10) % 10, build % 10
        digest = hashlib.sha256(f"{self.name}:{build}".encode()).hexdigest()
        return Image(self.repository, f"{major}.{minor}.{patch}", f"sha256:{digest}")


def fleet_names(archetypes: tuple[str, ...], count: int) -> list[tuple[str, str, int]]:
    """(name, archetype, block) for ``count`` services, the archetypes in turn."""
    return [
        (
            f"{archetypes[i % len(archetypes)]}-{i // len(archetypes):02d}",
            archetypes[i % len(archetypes)],
            i // len(archetypes),
        )
        for i in range(count)
    ]


def missing_peers(repo: Repo, count: int) -> str | None:
    """Why a fleet of ``count`` copies of ``repo``'s services would name services it does not
    have (a last block that copies a service whose files name one left out of that block, a
    peer its network policy or URL names), else None."""
    archetypes = repo.services
    copied = count % len(archetypes)
    if not copied:
        return None
    left_out, block = archetypes[copied:], count // len(archetypes)
    for archetype in archetypes[:copied]:
        files = [repo.root / ENVIRONMENTS_DIR / BASE_DIR / f"{archetype}.yaml"]
        files += [repo.release(archetype, env.name).values_file for env in repo.environments]
        for path in files:
            text = path.read_text()
            for peer in left_out:
                if re.search(rf"\b{re.escape(peer)}\b", text):
                    return (
                        f"{archetype}-{block:02d} would name {peer}-{block:02d}, which a fleet of "
                        f"{count} does not have; use a multiple of {len(archetypes)} (the "
                        "source's services)"
                    )
    return None


def _renamed(text: str, archetypes: tuple[str, ...], block: int) -> str:
    """An archetype's file as the copy in ``block`` has it: peers, modules and hosts renamed."""
    for name in sorted(archetypes, key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(name)}\b(?!-\d)", f"{name}-{block:02d}", text)
        module = name.replace("-", "_")
        text = text.replace(f"{module}.", f"{module}_{block:02d}.")
    return _HOST.sub(lambda m: f"{m['key']}{m['name']}-{block:02d}.", text)


def _with_image(text: str, image: Image) -> str:
    edited = with_image(text, image)
    if edited is None:
        raise ValueError("a values file of the fleet has no one-line image")
    return edited


def _tracked(root: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--", *COPIED],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [path for path in listed.split("\0") if path]


class _History:
    """Simulates the team's work on the fleet, one commit at a time, as fast-import input."""

    def __init__(self, source: Repo, files: dict[str, str], count: int, seed: int) -> None:
        self.files = files
        self.stages = [env.name for env in source.environments]
        self.random = random.Random(seed)
        self.services: dict[str, _Service] = {}
        self.mark = 0
        self.time = _START
        self.chunks: list[bytes] = []

    def add_service(self, name: str, repository: str) -> None:
        service = _Service(name, repository)
        # dev leads, production trails: the steady state of a pipeline
        for age, stage in enumerate(reversed(self.stages)):
            service.running[stage] = age
            service.previous[stage] = []
            self.files[self._path(stage, name)] = _with_image(
                self.files[self._path(stage, name)], service.image(age)
            )
        service.builds = len(self.stages) - 1
        self.services[name] = service

    @staticmethod
    def _path(stage: str, service: str) -> str:
        return f"{ENVIRONMENTS_DIR}/{stage}/{service}.yaml"

    def commit(self, message: str, changed: dict[str, str], author: int = 0) -> None:
        self.files.update(changed)
        self.mark += 1
        self.time += self.random.randint(60, 3600)
        who, email = _AUTHORS[author]
        body = message.encode()
        lines = [
            b"commit refs/heads/main\n",
            f"mark :{self.mark}\n".encode(),
            f"committer {who} <{email}> {self.time} +0000\n".encode(),
            f"data {len(body)}\n".encode() + body + b"\n",
        ]
        if self.mark > 1:
            lines.append(f"from :{self.mark - 1}\n".encode())
        for path, text in changed.items():
            data = text.encode(errors="surrogateescape")
            lines.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        self.chunks.append(b"".join(lines) + b"\n")

    def _set(
        self, stage: str, service: _Service, build: int, *, remember: bool = True
    ) -> dict[str, str]:
        path = self._path(stage, service.name)
        if remember:
            service.previous[stage].append(service.running[stage])
        service.running[stage] = build
        return {path: _with_image(self.files[path], service.image(build))}

    def build(self, service: _Service) -> None:
        service.builds += 1
        image = service.image(service.builds)
        changed = self._set(self.stages[0], service, service.builds)
        self.commit(f"ci({service.name}): build {image.tag}\n", changed)

    def promote(self, services: list[_Service], index: int) -> None:
        source, target = self.stages[index - 1], self.stages[index]
        moving = [s for s in services if s.running[source] != s.running[target]]
        if not moving:
            return
        changed: dict[str, str] = {}
        trailers = [
            "Platform-Action: promote",
            f"Platform-Environment: {target}",
        ]
        for service in moving:
            changed.update(self._set(target, service, service.running[source]))
            trailers.append(f"Platform-Service: {service.name}")
            trailers.append(f"Platform-Image: {service.image(service.running[target]).reference}")
        trailers += [f"Platform-From: {source}", f"Platform-Actor: {_AUTHORS[3][0]}"]
        names = ",".join(s.name for s in moving)
        subject = f"promote({names}): {source} → {target}"
        self.commit(subject + "\n\n" + "\n".join(trailers) + "\n", changed, author=3)

    def rollback(self, service: _Service, stage: str) -> None:
        earlier = service.previous[stage]
        if not earlier:
            return
        build = earlier.pop()
        changed = self._set(stage, service, build, remember=False)
        tag = service.image(build).tag
        trailers = (
            f"Platform-Action: rollback\nPlatform-Environment: {stage}\n"
            f"Platform-Service: {service.name}\n"
            f"Platform-Image: {service.image(build).reference}\n"
            "Platform-Reason: error rate above objective\n"
            f"Platform-Actor: {_AUTHORS[2][0]}\n"
        )
        self.commit(f"rollback({service.name}): {stage} to {tag}\n\n{trailers}", changed, author=2)

    def hand_edit(self, service: _Service) -> None:
        stage = self.random.choice(self.stages)
        path = self._path(stage, service.name)
        match = _LOG_LEVEL.search(self.files[path])
        if match is None:
            return
        level = _NEXT_LEVEL.get(match["level"], "info")
        edited = _LOG_LEVEL.sub(f"{match['key']}{level}", self.files[path], count=1)
        self.commit(f"{service.name}: log level {level} in {stage}\n", {path: edited}, author=1)

    def simulate(self, count: int) -> None:
        """``count`` commits in all: the first holds the files, the last leads dev again."""
        services = list(self.services.values())
        self.commit("Platform repository with a synthetic fleet\n", dict(self.files), author=1)
        while self.mark < count - 1:
            roll = self.random.random()
            service = self.random.choice(services)
            if roll < 0.40:
                self.build(service)
            elif roll < 0.70:
                self.promote([service], 1)
            elif roll < 0.85:
                self.promote([service], len(self.stages) - 1)
            elif roll < 0.90:
                self.rollback(service, self.random.choice(self.stages[1:]))
            elif roll < 0.92:
                self.promote(self.random.sample(services, min(5, len(services))), 1)
            else:
                self.hand_edit(service)
        self._lead_everywhere(services)

    def _lead_everywhere(self, services: list[_Service]) -> None:
        """One last CI run: each stage ahead of the next, for every service."""
        changed: dict[str, str] = {}
        for service in services:
            for index in range(len(self.stages) - 2, -1, -1):
                stage, after = self.stages[index], self.stages[index + 1]
                if service.running[stage] <= service.running[after]:
                    build = service.running[after] + 1
                    service.builds = max(service.builds, build)
                    changed.update(self._set(stage, service, build))
        self.commit("ci: build every service\n", changed)

    def stream(self) -> Iterator[bytes]:
        yield from self.chunks
        yield b"done\n"


def generate(
    destination: Path,
    services: int = 100,
    history: int = 10_000,
    *,
    source: Path = PROJECT_ROOT,
    seed: int = 2026,
) -> Fleet:
    """Write a fleet repository at ``destination`` (which must not exist yet)."""
    if services < 1:
        raise ValueError("a fleet needs at least one service")
    if history < 2:
        raise ValueError("a history needs at least two commits (the files, the last build)")
    repo = load_repo(source)
    problem = missing_peers(repo, services)
    if problem:
        raise ValueError(problem)
    archetypes = repo.services
    release_files = {str(r.values_file.relative_to(source)) for r in repo.releases.values()}
    base_files = {f"{ENVIRONMENTS_DIR}/{BASE_DIR}/{name}.yaml" for name in archetypes}
    files = {
        # surrogateescape: the vendored charts hold a few binary files, kept byte for byte
        path: (source / path).read_text(errors="surrogateescape")
        for path in _tracked(source)
        if path not in release_files and path not in base_files
    }
    simulation = _History(repo, files, history, seed)
    names = fleet_names(archetypes, services)
    for name, archetype, block in names:
        base = (source / ENVIRONMENTS_DIR / BASE_DIR / f"{archetype}.yaml").read_text()
        files[f"{ENVIRONMENTS_DIR}/{BASE_DIR}/{name}.yaml"] = _renamed(base, archetypes, block)
        for env in repo.environments:
            text = repo.release(archetype, env.name).values_file.read_text()
            files[f"{ENVIRONMENTS_DIR}/{env.name}/{name}.yaml"] = _renamed(text, archetypes, block)
    for name, archetype, _ in names:
        repository = repo.release(archetype, repo.environments[0].name).image.repository
        simulation.add_service(name, repository.rsplit("/", 1)[0] + f"/{name}")
    simulation.simulate(history)

    destination.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(destination)], check=True)
    subprocess.run(
        ["git", "-C", str(destination), "fast-import", "--quiet"],
        input=b"".join(simulation.stream()),
        check=True,
    )
    git = ["git", "-C", str(destination)]
    subprocess.run([*git, "checkout", "--quiet", "--force", "main"], check=True)
    subprocess.run([*git, "config", "user.name", "Benchmark"], check=True)
    subprocess.run([*git, "config", "user.email", "benchmark@acme-corp.example"], check=True)
    return Fleet(
        root=destination,
        services=tuple(name for name, _, _ in names),
        environments=tuple(env.name for env in repo.environments),
        commits=simulation.mark,
    )

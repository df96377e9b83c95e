"""Moving a branch to a commit built aside, so that a kill at any instant loses nothing.

The order, and what a kill after each step leaves (each boundary is a ``fault`` point):

``built``      the commit object exists, unreferenced: old state (git gc removes it).
``journaled``  ``<git-dir>/platform-journal.json`` names old and new commit: old state; the
               next run sees the branch still at old and drops the journal.
``moved``      ``update-ref`` moved the branch (compare-and-swap from old): the new commit,
               with the working tree still at old; the next run writes the files the journal
               names (each must hold the old or the new text, else it stops and says why).
``synced``     tree and index at the new commit. With ``--push`` the journal stays until the
               push succeeds: the next run pushes it (or re-plans it on a moved remote) and
               never reports "nothing to promote".

SIGINT is held back from ``moved`` to ``synced``, so Ctrl-C never leaves half a tree.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from platformctl.errors import EnvironmentProblem, InputError, RefusedError
from platformctl.git import Git, fault

JOURNAL_FILE = "platform-journal.json"


@dataclass(frozen=True)
class Journal:
    branch: str
    old: str
    new: str
    paths: tuple[str, ...]
    # (remote, remote branch) when the commit was made to be pushed there
    push: tuple[str, str] | None = None


def _journal_path(git: Git) -> Path:
    return git.git_dir / JOURNAL_FILE


def read_journal(git: Git) -> Journal | None:
    path = _journal_path(git)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        push = raw.get("push")
        return Journal(
            branch=str(raw["branch"]),
            old=str(raw["old"]),
            new=str(raw["new"]),
            paths=tuple(str(p) for p in raw["paths"]),
            push=(str(push[0]), str(push[1])) if push else None,
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, IndexError):
        raise EnvironmentProblem(
            f"{path} is not a journal this tool wrote",
            hint="if no platform command is running, delete it and run again",
        ) from None


def write_journal(git: Git, journal: Journal) -> None:
    """Atomically (write aside, fsync, rename): a reader sees the old or the new journal."""
    path = _journal_path(git)
    scratch = path.with_suffix(".tmp")
    with scratch.open("w", encoding="utf-8") as handle:
        json.dump(asdict(journal), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)


def clear_journal(git: Git) -> None:
    _journal_path(git).unlink(missing_ok=True)


@contextmanager
def _no_interrupt() -> Iterator[None]:
    """Hold SIGINT back for a few file writes; a Ctrl-C meanwhile is raised right after."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _write_file(path: Path, data: bytes) -> None:
    scratch = path.with_name(f".{path.name}.platform-tmp")
    scratch.write_bytes(data)
    os.replace(scratch, path)


def sync_tree(git: Git, files: Mapping[str, bytes]) -> None:
    """Bring the working tree and index to the branch's commit for ``files`` (one git call)."""
    for number, (relative, data) in enumerate(files.items()):
        _write_file(git.root / relative, data)
        if number == 0:
            fault("tree-partial")
    git.run("update-index", "-q", "--", *files)


def move(git: Git, journal: Journal, files: Mapping[str, str] | None = None) -> None:
    """Journal, compare-and-swap the branch, write the tree: the steps of the module doc
    (``files``: the new texts when the caller has them, else read from the new commit)."""
    write_journal(git, journal)
    fault("journaled")
    with _no_interrupt():
        if not git.move_branch(journal.branch, journal.new, journal.old, "platform"):
            clear_journal(git)
            raise RefusedError(
                f"branch {journal.branch} moved while this command ran",
                hint="nothing was written; run the command again",
            )
        fault("moved")
        data = (
            {path: text.encode() for path, text in files.items()}
            if files is not None
            else _contents(git, journal.new, journal.paths)
        )
        sync_tree(git, data)
    fault("synced")
    if journal.push is None:
        clear_journal(git)


def _contents(git: Git, commit: str, paths: tuple[str, ...]) -> dict[str, bytes]:
    blobs = git.read_files([(commit, path) for path in paths])
    return {path: blob or b"" for path, blob in zip(paths, blobs, strict=True)}


def recover(git: Git, branch: str) -> Journal | None:
    """Finish what an interrupted run left; the journal of a commit still to push, if any."""
    journal = read_journal(git)
    if journal is None or journal.branch != branch:
        return None  # another branch's: finished when that branch is checked out again
    tip = git.rev(f"refs/heads/{journal.branch}")
    if tip == journal.old:  # killed before the branch moved: nothing visible happened
        clear_journal(git)
        return None
    if tip == journal.new:
        _finish_tree(git, journal)
    elif tip is None or not git.ok("merge-base", "--is-ancestor", journal.new, tip):
        # the branch was reset or rewritten since: the unpushed commit is not on it any more
        clear_journal(git)
        return None
    if journal.push is None:
        clear_journal(git)
        return None
    return journal


def _finish_tree(git: Git, journal: Journal) -> None:
    """The branch moved but the files may not have: write them, if each is old or new."""
    old = _contents(git, journal.old, journal.paths)
    new = _contents(git, journal.new, journal.paths)
    for path in journal.paths:
        try:
            on_disk = (git.root / path).read_bytes()
        except FileNotFoundError:
            on_disk = b""
        if on_disk not in (old[path], new[path]):
            raise InputError(
                f"{path} was edited after an interrupted platform command committed "
                f"{journal.new[:12]}",
                hint=f"keep your edit (git commit) or drop it (git checkout -- {path}), then "
                f"delete {_journal_path(git)} and run again",
            )
    sync_tree(git, new)

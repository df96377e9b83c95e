"""The resident worker: a command run through it is the same command as one run in-process
(output, exit code, tree, signals, the process it sees), and the launcher falls back to
in-process whenever the worker is not the one for this installation."""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from platformctl import launcher
from platformctl.worker import Command
from tests.cli.test_bad_input import state as raw_state
from tests.conftest import PLATFORM_BINARY, as_job, git
from tests.release.fleet import Fleet, make_fleet, slow_push

Env = dict[str, str]
# Fixed commit dates: the same promotion made twice makes the same commit, so the two runs'
# outputs (which name the commit) can be compared byte for byte.
# enough runs that a command run twice 2.5 % of the time shows (0.975**200: 0.6 %)
RUNS_ONCE = 200
DATES = {"GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z"}


@pytest.fixture(scope="module")
def runtime() -> Iterator[Env]:
    """An environment whose worker socket is in a folder of its own (short: a socket path
    has at most 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="pw-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.pop(launcher.OFF_VARIABLE, None)
    env["XDG_RUNTIME_DIR"] = folder
    yield env
    subprocess.run([PLATFORM_BINARY, "worker", "stop"], env=env, capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def worker(runtime: Env) -> Env:
    """The environment, with its worker running (started once, or again after a test that
    made it exit)."""
    started = platform(["worker", "start"], runtime)
    assert started.returncode == 0, started.stderr
    return runtime


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    fleet = make_fleet(tmp_path_factory.mktemp("worker") / "fleet", ["alpha", "beta"])
    fleet.set_image(fleet.stages[0], "alpha", 2)
    return fleet


@pytest.fixture
def fleet(template: Fleet, tmp_path: Path) -> Fleet:
    root = tmp_path / "fleet"
    shutil.copytree(template.root, root, symlinks=True)
    return Fleet(root, template.stages, template.services)


def state(root: Path) -> dict[str, str]:
    """The clone's tree, refs, stash and index entries (the index file itself also holds
    the files' stat times, which differ from run to run)."""
    return {**raw_state(root), "index": git(root, "ls-files", "--stage")}


def platform(
    args: list[str], env: Env, *, cwd: Path | None = None, in_process: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**env, launcher.OFF_VARIABLE: "off"} if in_process else env
    return subprocess.run(
        [PLATFORM_BINARY, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )


def commands_run(env: Env) -> int:
    """How many commands the worker has run (-1: none runs)."""
    shown = platform(["worker", "status", "-o", "json"], env, in_process=True)
    report = json.loads(shown.stdout)
    return int(report["commands"]) if report["running"] else -1


def both_ways(
    fleet: Fleet, args: list[str], env: Env, cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run ``args`` through the worker and, from the same commit, in-process: the worker's
    result and the clone it left, after checking that both ways gave the same."""
    start = git(fleet.root, "rev-parse", "HEAD").strip()
    before = commands_run(env)
    through = platform(args, env, cwd=cwd)
    assert commands_run(env) == before + 1, "the command did not go through the worker"
    left = state(fleet.root)
    git(fleet.root, "reset", "--quiet", "--hard", start)
    here = platform(args, env, cwd=cwd, in_process=True)
    assert (through.returncode, through.stdout, through.stderr) == (
        here.returncode,
        here.stdout,
        here.stderr,
    )
    assert state(fleet.root) == left
    return through, left


def test_a_promotion_is_the_same_through_the_worker(fleet: Fleet, worker: Env) -> None:
    env = {**worker, **DATES, "GIT_AUTHOR_NAME": "Worker Test"}
    before = state(fleet.root)
    result, after = both_ways(fleet, ["promote", "alpha", "--to", fleet.stages[1]], env, fleet.root)
    assert result.returncode == 0, result.stderr
    assert after != before
    # the environment (GIT_*) and the cwd (no --repo) were the launcher's
    assert (
        git(fleet.root, "log", "-1", "--format=%an %aI")
        == "Worker Test 2026-01-02T03:04:05+00:00\n"
    )


def test_a_command_runs_once_however_fast_it_ends(worker: Env) -> None:
    """A command that ended before the launcher's last send returned (`--version`, a shell
    completion) ran a second time in-process: the launcher took the broken pipe of its empty
    last send for a worker that had not started it (5 of 200 `--version`s printed twice; a
    promotion, slower, needed the launcher to stall between two system calls)."""
    before = commands_run(worker)
    printed = Counter(platform(["--version"], worker).stdout for _ in range(RUNS_ONCE))
    assert printed == Counter({f"platform {version('platformctl')}\n": RUNS_ONCE})
    assert commands_run(worker) == before + RUNS_ONCE


def test_a_refused_gate_is_the_same_through_the_worker(fleet: Fleet, worker: Env) -> None:
    stage = fleet.stages[1]
    held = platform(
        ["--repo", str(fleet.root), "hold", "alpha", "-e", stage, "--reason", "INC-1"], worker
    )
    assert held.returncode == 0, held.stderr
    result, _ = both_ways(
        fleet, ["--repo", str(fleet.root), "promote", "alpha", "--to", stage], worker
    )
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["promote", "nosuch", "--to", "{t1}"],
        ["promote", "alpha", "--bogus"],
        ["--debug", "promote", "nosuch", "--to", "{t1}"],
        ["--debug", "rollback", "alpha", "-e", "{t1}", "--to", ""],
    ],
    ids=["unknown-service", "usage-error", "debug-traceback", "debug-empty-release"],
)
def test_bad_input_is_the_same_through_the_worker(
    fleet: Fleet, worker: Env, args: list[str]
) -> None:
    filled = [arg.format(t1=fleet.stages[1]) for arg in args]
    result, _ = both_ways(fleet, ["--repo", str(fleet.root), *filled], worker)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: ")
    if "--debug" in args:
        assert "Traceback" in result.stderr


def test_shell_completion_finds_the_shell_with_a_worker_running(worker: Env) -> None:
    """``--show-completion`` detects the shell among the process's parents, which only the
    launcher has: it runs in-process, and prints the same script as with no worker."""
    before = commands_run(worker)
    outputs = []
    for env in (worker, {**worker, launcher.OFF_VARIABLE: "off"}):
        # `; true`: bash stays the parent (a lone command would be exec'd in its place)
        shown = subprocess.run(
            ["bash", "-c", f"'{PLATFORM_BINARY}' --show-completion; true"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert "_PLATFORM_COMPLETE" in shown.stdout, shown.stderr
        outputs.append(shown.stdout)
    assert outputs[0] == outputs[1]
    assert commands_run(worker) == before


def test_a_terminal_is_a_terminal_through_the_worker(fleet: Fleet, worker: Env) -> None:
    """isatty, and so colour, follow the launcher's streams."""
    outputs = []
    for in_process in (False, True):
        env = {**worker, launcher.OFF_VARIABLE: "off"} if in_process else worker
        env = {**env, "TERM": "xterm"}
        env.pop("NO_COLOR", None)
        primary, secondary = pty.openpty()
        process = subprocess.Popen(
            [PLATFORM_BINARY, "--repo", str(fleet.root), "status"],
            env=env,
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
        )
        os.close(secondary)
        data = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            data += chunk
        os.close(primary)
        assert process.wait() == 0
        outputs.append(data)
    assert outputs[0] == outputs[1]
    assert b"\033[" in outputs[0]  # coloured, as on a terminal


def _waiting_push(
    tmp_path: Path, env: Env, *, foreground: bool = True
) -> tuple[subprocess.Popen[str], Fleet, int]:
    """A promotion started through the worker as a foreground (or background) job, under
    umask 027, whose push waits on a slow hook of the remote: the launcher, the clone and the
    worker's child running it."""
    push = slow_push(tmp_path)
    work = push.work
    command = [PLATFORM_BINARY, "promote", "alpha", "--to", push.origin.stages[1], "--push"]
    promote = " ".join(as_job(command, foreground=foreground))
    process = subprocess.Popen(
        ["/bin/sh", "-c", f"umask 027; exec {promote}"],
        cwd=work.root,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    push.wait_for_hook(process)
    return process, work, _worker_child(env)


def test_the_command_runs_as_the_launchers_process_and_ctrl_c_exits_130(
    tmp_path: Path, worker: Env
) -> None:
    """While a push waits on a slow hook, the worker's child has the launcher's streams,
    cwd and umask (the environment: see the promotion test); Ctrl-C to the launcher reaches
    it: 130, nothing half done."""
    process, work, child = _waiting_push(tmp_path, worker)
    proc = Path("/proc") / str(child)
    for fd in (0, 1, 2):
        assert os.readlink(proc / "fd" / str(fd)) == os.readlink(f"/proc/{process.pid}/fd/{fd}")
    assert os.readlink(proc / "cwd") == str(work.root)
    assert "Umask:\t0027" in (proc / "status").read_text()
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == ["error: interrupted: nothing was left half-done"]
    assert git(work.root, "status", "--porcelain") == ""


def test_a_background_jobs_command_ignores_ctrl_c_through_the_worker_as_in_process(
    tmp_path: Path, worker: Env
) -> None:
    """A script's ``platform ... &`` starts with SIGINT ignored, so a Ctrl-C meant for the
    script does not stop it in-process; through the worker, the launcher does not forward it
    and the command ignores it as well."""
    process, _, child = _waiting_push(tmp_path, worker, foreground=False)
    try:
        assert signal.SIGINT in _signals(process.pid, "SigIgn")
        assert signal.SIGINT not in _signals(process.pid, "SigCgt")
        assert signal.SIGINT in _signals(child, "SigIgn")
        assert signal.SIGTERM in _signals(process.pid, "SigCgt")  # still forwarded
    finally:
        process.kill()
        process.communicate()


def test_a_request_may_only_ask_to_ignore_a_forwarded_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The child ignores what the request lists: never SIGCHLD, SIGKILL or a number of its
    own choosing (the worker refuses such a request, and the launcher runs in-process)."""
    for name in launcher.STREAMS:  # the interpreter's own, not pytest's capture
        monkeypatch.setattr(sys, name, getattr(sys, f"__{name}__"))
    body = launcher.run_request()[launcher.LENGTH.size :]
    fields = [os.fsdecode(field) for field in body.split(b"\0")[2:]]  # after protocol, kind
    expected = tuple(int(signum) for signum in launcher.ignored().split(",") if signum)
    assert Command.parse(fields, [0, 1, 2]).ignored == expected
    for bad in (str(int(signal.SIGCHLD)), "9", "2,x"):
        fields[4] = bad
        with pytest.raises(ValueError, match=r"forwarded signal|invalid literal"):
            Command.parse(fields, [0, 1, 2])


def _signals(pid: int, mask: str) -> set[int]:
    """The signals in ``mask`` (SigIgn: ignored, SigCgt: with a handler) of process ``pid``."""
    line = next(
        line
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith(f"{mask}:")
    )
    bits = int(line.split()[1], 16)
    return {signum for signum in range(1, 65) if bits >> (signum - 1) & 1}


def test_a_killed_launcher_takes_its_command_with_it(tmp_path: Path, worker: Env) -> None:
    """SIGKILL cannot be forwarded: the worker sees the launcher's end of the socket close
    and kills the command, as the kill would have in-process."""
    process, _, child = _waiting_push(tmp_path, worker)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the worker to reap it, not measuring anything
    assert not Path(f"/proc/{child}").exists()


def _worker_child(env: Env) -> int:
    shown = json.loads(platform(["worker", "status", "-o", "json"], env, in_process=True).stdout)
    children = Path(f"/proc/{shown['pid']}/task/{shown['pid']}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_a_killed_command_kills_the_launcher_the_same_way(fleet: Fleet, worker: Env) -> None:
    env = {**worker, "PLATFORM_FAULT": "built"}
    result, _ = both_ways(
        fleet, ["--repo", str(fleet.root), "promote", "alpha", "--to", fleet.stages[1]], env
    )
    assert result.returncode == -signal.SIGKILL


def test_another_interpreter_setup_runs_in_process(fleet: Fleet, worker: Env) -> None:
    """A variable read at import time differs from the worker's: the launcher runs the
    command itself, and says nothing about it."""
    env = {**worker, "TYPER_USE_RICH": "0"}
    before = commands_run(worker)
    through = platform(["--repo", str(fleet.root), "promote", "--help"], env)
    here = platform(["--repo", str(fleet.root), "promote", "--help"], env, in_process=True)
    assert through.returncode == 0
    assert (through.stdout, through.stderr) == (here.stdout, here.stderr)
    assert commands_run(worker) == before


def test_a_changed_installation_is_never_served(fleet: Fleet, worker: Env) -> None:
    """A package file changed after the worker started: the command runs in-process, and
    the worker exits."""
    source = Path(launcher.__file__)
    info = source.stat()
    os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    try:
        result = platform(["--repo", str(fleet.root), "status"], worker)
    finally:
        os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert result.returncode == 0, result.stderr
    assert "alpha" in result.stdout
    assert commands_run(worker) == -1


def test_stop_and_status(runtime: Env, worker: Env) -> None:
    shown = json.loads(platform(["worker", "status", "-o", "json"], worker).stdout)
    assert shown["running"]
    assert shown["current"]
    again = platform(["worker", "start"], worker)
    assert again.stdout.startswith("worker already running")
    stopped = platform(["worker", "stop"], worker)
    assert stopped.stdout == f"worker stopped (pid {shown['pid']})\n"
    assert platform(["worker", "status"], worker).stdout == "no worker running\n"
    assert platform(["worker", "stop"], worker).stdout == "no worker running\n"
    assert not Path(shown["socket"]).exists()


def test_the_socket_is_only_this_users(worker: Env) -> None:
    path = Path(json.loads(platform(["worker", "status", "-o", "json"], worker).stdout)["socket"])
    folder = path.parent.lstat()
    assert stat.S_ISDIR(folder.st_mode)
    assert stat.S_IMODE(folder.st_mode) == 0o700
    assert folder.st_uid == os.getuid()
    socket_info = path.lstat()
    assert stat.S_ISSOCK(socket_info.st_mode)
    assert not socket_info.st_mode & 0o077


def test_a_socket_folder_others_can_use_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="pw-", dir="/tmp"))
    try:
        (runtime / "platformctl").mkdir(mode=0o755)
        (runtime / "platformctl").chmod(0o755)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        env.pop(launcher.OFF_VARIABLE, None)
        result = platform(["worker", "start"], env)
        assert result.returncode == 3
        assert result.stderr.splitlines() == [
            f"error: {runtime}/platformctl is not a folder only you can use: remove it, "
            "or set XDG_RUNTIME_DIR"
        ]
        # a command still runs (in-process)
        assert platform(["--repo", str(fleet.root), "status"], env).returncode == 0
    finally:
        shutil.rmtree(runtime)


@pytest.mark.parametrize(
    "args",
    [
        ["worker", "start", "--idle-timeout", "0"],
        ["worker", "start", "--idle-timeout", "soon"],
        ["worker", "restart"],
        ["worker", "status", "-o", "yaml"],
    ],
)
def test_bad_worker_input_is_one_line_and_exit_2(
    fleet: Fleet, runtime: Env, args: list[str]
) -> None:
    before = state(fleet.root)
    result = platform(args, runtime, cwd=fleet.root)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert state(fleet.root) == before


def test_the_suites_commands_run_through_its_resident_worker() -> None:
    """The worker conftest starts runs the commands tests start: the suite is its proof."""
    env = dict(os.environ)
    before = commands_run(env)
    assert before >= 0
    assert platform(["--version"], env).returncode == 0
    assert commands_run(env) == before + 1


@pytest.mark.usefixtures("in_process")
def test_in_process_tests_run_their_commands_without_the_worker() -> None:
    env = dict(os.environ)
    before = commands_run(env)
    assert platform(["--version"], env).returncode == 0
    assert commands_run(env) == before


def test_the_worker_computes_what_only_the_installation_decides_before_it_forks() -> None:
    """The click command, the CRDs' API versions and the engines' fingerprint are made once by
    the worker, so its children inherit them instead of each making them again; and making
    them starts no thread (a fork keeps only the thread that forks)."""
    program = (
        "import json, threading\n"
        "from platformctl import worker\n"
        "from platformctl.cli import command\n"
        "from platformctl.schemas import crd_api_versions\n"
        "from platformctl.verify import installed_engines\n"
        "made = (command, crd_api_versions, installed_engines)\n"
        "before = [f.cache_info().currsize for f in made]\n"
        "worker._compute_installed()\n"
        "after = [f.cache_info().currsize for f in made]\n"
        "print(json.dumps([before, after, threading.active_count()]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == [[0, 0, 0], [1, 1, 1], 1]

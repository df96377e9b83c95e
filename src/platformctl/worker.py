"""A resident worker that runs ``platform`` commands without paying for imports each time.

Like Mercurial's ``chg`` command server: the worker imports the CLI and what the release
commands and their gates import once, listens on a unix socket, and forks a child per command
(see ``platformctl.launcher`` for the client). The child takes the launcher's standard streams
(``dup2`` of the descriptors it sent), cwd, environment, umask and ignored signals, rebuilds
``sys.std*`` as Python would have for the launcher, and runs the CLI in-process; the worker
sends back its wait status. A fork starts from the worker's freshly imported state, never
from an earlier command's.

Not imported ahead: checkov (the policy gate runs it in its own process) and helm_python,
whose Go runtime starts threads when it loads, which a fork does not carry over; a child that
renders imports it itself. The worker refuses to start when importing left a thread running.

Safety: the socket is in a folder only this user can use (checked owner and mode), each peer's
uid is checked (SO_PEERCRED), and a request from an installation whose files changed since the
worker started (``launcher.fingerprint``) is refused, so the launcher runs it in-process and the
worker exits; after ``idle_timeout`` seconds without a command it exits too.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import locale
import os
import selectors
import signal
import socket
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from platformctl import launcher
from platformctl.errors import EnvironmentProblem

# What a release command and its gates import (the CLI imports the platformctl modules).
PRELOADED = (
    "platformctl.cli",
    "importlib.metadata",
    "httpx",
    "boto3",
    "ruamel.yaml",
    "ruamel.yaml.comments",
    "ruamel.yaml.error",
    "jsonschema",
    "jsonschema.exceptions",
    "referencing",
    "kubernetes_validate",
    "cryptography.exceptions",
    "cryptography.hazmat.primitives.hashes",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.serialization",
)
DEFAULT_IDLE_TIMEOUT = 1800
# How long a client has to send its request, and `start` and `stop` to see the worker change.
REQUEST_TIMEOUT = 5.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
MAX_REQUEST = 4 << 20


@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    socket: str
    started: float
    idle_timeout: float
    # how many commands it has run
    commands: int
    # whether it serves this installation as it is now (else the launcher does not use it)
    current: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "running": True,
            "pid": self.pid,
            "socket": self.socket,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "idle_timeout": self.idle_timeout,
            "commands": self.commands,
            "current": self.current,
        }


def status() -> WorkerInfo | None:
    """The worker of this user and installation, if one answers."""
    path = launcher.socket_path()
    reply = _control(path, b"status")
    if reply is None or len(reply) != 6:
        return None
    pid, started, idle, commands, fingerprint, interpreter = reply
    current = fingerprint == launcher.fingerprint() and interpreter == launcher.interpreter()
    return WorkerInfo(int(pid), path, float(started), float(idle), int(commands), current)


def start(idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> tuple[WorkerInfo, bool]:
    """A running current worker and whether this call started it; one serving an older
    installation is stopped first."""
    running = status()
    if running is not None and running.current:
        return running, False
    if running is not None:
        stop()
    path = launcher.socket_path()
    _private_folder(os.path.dirname(path))
    log = Path(path).with_suffix(".log")
    code = (
        f"import sys; sys.path[:] = {sys.path!r}; from platformctl.worker import serve; "
        f"serve({path!r}, {float(idle_timeout)!r})"
    )
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            cwd="/",
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = status()
        if info is not None and info.pid == process.pid:
            return info, True
        if process.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            raise EnvironmentProblem(
                f"the worker did not start: {lines[-1] if lines else f'exit {process.returncode}'}"
            )
        time.sleep(0.02)
    process.kill()
    raise EnvironmentProblem(f"the worker did not answer within {START_TIMEOUT:.0f} s (see {log})")


def stop() -> WorkerInfo | None:
    """Stop the worker (it finishes the commands it runs first); the one stopped, if any."""
    info = status()
    if info is None:
        return None
    _control(info.socket, b"stop")
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not os.path.exists(info.socket):
            return info
        time.sleep(0.02)
    raise EnvironmentProblem(f"the worker (pid {info.pid}) did not stop within {STOP_TIMEOUT} s")


def _control(path: str, kind: bytes) -> list[str] | None:
    """Send a control request; the reply's fields, or None when no worker answers."""
    try:
        connection = launcher.connect(path)
    except OSError:
        return None
    if connection is None:
        return None
    with connection:
        connection.settimeout(REQUEST_TIMEOUT)
        try:
            connection.sendall(launcher.request(kind, []))
            fields = _receive(connection)[0]
        except (OSError, ValueError):
            return None
    return fields[1:]


def _receive(connection: socket.socket) -> tuple[list[str], list[int]]:
    """One length-prefixed message and the descriptors sent with it."""
    data, fds, _, _ = socket.recv_fds(connection, 65536, len(launcher.STREAMS))
    try:
        while len(data) < launcher.LENGTH.size or len(data) < _length(data):
            chunk = connection.recv(65536)
            if not chunk:
                raise ValueError("the request ended early")
            data += chunk
        fields = data[launcher.LENGTH.size : _length(data)].split(b"\0")
        if fields[0] != launcher.PROTOCOL:
            raise ValueError("another protocol")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return [os.fsdecode(field) for field in fields[1:]], fds


def _length(data: bytes) -> int:
    (length,) = launcher.LENGTH.unpack_from(data)
    if length > MAX_REQUEST:
        raise ValueError("request too large")
    return int(launcher.LENGTH.size + length)


def _private_folder(folder: str) -> None:
    """Create the socket's folder (0700), or check that an existing one is only ours."""
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass  # checked below
    except OSError as error:
        raise EnvironmentProblem(f"{folder}: {error.strerror}") from error
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise EnvironmentProblem(
            f"{folder} is not a folder only you can use: remove it, or set XDG_RUNTIME_DIR"
        )


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def serve(path: str, idle_timeout: float) -> None:
    """Import everything, listen at ``path`` and run commands until stopped or idle."""
    for module in PRELOADED:
        importlib.import_module(module)
    _compute_installed()
    if _threads() != 1:
        raise EnvironmentProblem("importing the CLI started a thread: a fork would lose it")
    Server(path, idle_timeout).loop()


def _compute_installed() -> None:
    """What every command would compute again, though it is a function of the installation
    alone, which every request's fingerprint shows unchanged: once here, not by every child
    (the CRDs' API versions 30-40 ms, the click command ~15 ms, the engines' fingerprint
    ~3 ms for each of a command's gates)."""
    from platformctl.cli import command
    from platformctl.schemas import crd_api_versions
    from platformctl.verify import installed_engines

    crd_api_versions()
    command()
    installed_engines()


class Server:
    def __init__(self, path: str, idle_timeout: float) -> None:
        self.path = path
        self.idle_timeout = idle_timeout
        self.started = time.time()
        self.fingerprint = launcher.fingerprint()
        self.interpreter = launcher.interpreter()
        self.running: dict[int, socket.socket] = {}
        self.commands = 0
        self.stopping = False
        self.last = time.monotonic()
        self.listener = self._listen()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, lambda *_: self._stop())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.wake_read, selectors.EVENT_READ)

    def _listen(self) -> socket.socket:
        _private_folder(os.path.dirname(self.path))
        if launcher.connect(self.path) is not None:
            raise EnvironmentProblem(f"another worker listens at {self.path}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o077)
        try:
            listener.bind(self.path)
        finally:
            os.umask(previous)
        listener.listen(64)
        return listener

    def _stop(self) -> None:
        """No new commands: close the socket; the loop ends when the running ones have."""
        if not self.stopping:
            self.stopping = True
            self.selector.unregister(self.listener)
            self.listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def loop(self) -> None:
        while not (self.stopping and not self.running):
            timeout = None
            if not self.running:
                timeout = self.last + self.idle_timeout - time.monotonic()
                if timeout <= 0:
                    self._stop()
                    continue
            for key, _ in self.selector.select(timeout):
                if key.fileobj is self.listener:
                    self._accept()
                elif isinstance(key.data, int):
                    self._launcher_gone(key.data)
                else:
                    while True:
                        try:
                            if not os.read(self.wake_read, 512):
                                break
                        except BlockingIOError:
                            break
            self._reap()

    def _reap(self) -> None:
        while self.running:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            connection = self.running.pop(pid, None)
            self.last = time.monotonic()
            if connection is not None:
                with contextlib.suppress(KeyError):  # unless _launcher_gone did
                    self.selector.unregister(connection)
                with connection, contextlib.suppress(OSError):
                    connection.sendall(launcher.REPLY.pack(launcher.ENDED, wait_status))

    def _accept(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        self.last = time.monotonic()
        try:
            if launcher.peer_uid(connection) != os.getuid():
                connection.close()
                return
            connection.settimeout(REQUEST_TIMEOUT)
            fields, fds = _receive(connection)
        except (OSError, ValueError, IndexError):
            connection.close()
            return
        kind, arguments = fields[0], fields[1:]
        if kind == "run":
            self._run(connection, arguments, fds)
            return
        for fd in fds:
            os.close(fd)
        with connection:
            if kind == "status":
                reply = [str(os.getpid()), str(self.started), str(self.idle_timeout)]
                reply.append(str(self.commands))
                reply += [self.fingerprint, self.interpreter]
                with contextlib.suppress(OSError):
                    connection.sendall(launcher.request(b"status", reply))
            elif kind == "stop":
                self._stop()
                with contextlib.suppress(OSError):
                    connection.sendall(launcher.request(b"stop", []))

    def _refuse(self, connection: socket.socket, kind: bytes) -> None:
        with connection, contextlib.suppress(OSError):
            connection.sendall(launcher.REPLY.pack(kind, 0))

    def _run(self, connection: socket.socket, arguments: list[str], fds: list[int]) -> None:
        try:
            if len(fds) != len(launcher.STREAMS):
                raise ValueError("three descriptors expected")
            command = Command.parse(arguments, fds)
        except (ValueError, IndexError):
            for fd in fds:
                os.close(fd)
            connection.close()
            return
        if command.fingerprint != self.fingerprint:
            # the installation changed under this worker: it must never run a command again
            self._refuse(connection, launcher.STALE)
            command.close()
            self._stop()
            return
        if command.interpreter != self.interpreter:
            self._refuse(connection, launcher.MISMATCH)
            command.close()
            return
        self.commands += 1
        # The child starts the command only once the launcher has been told it started: a
        # launcher that was not told runs the command itself, so it must never run here too.
        go, told = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(told)
                self._into_child(connection)
            except BaseException:
                os._exit(70)
            command.run(go)
        os.close(go)
        command.close()
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        self.running[pid] = connection
        try:
            connection.sendall(launcher.REPLY.pack(launcher.STARTED, pid))
            os.write(told, b"g")
        except OSError:
            pass  # no go-ahead: the child ends without running it
        finally:
            os.close(told)
        connection.setblocking(False)
        self.selector.register(connection, selectors.EVENT_READ, pid)

    def _launcher_gone(self, pid: int) -> None:
        """The launcher sends nothing after its request: its end of the connection became
        readable because it died (SIGKILL; it forwards the other signals). The command dies
        too, as an in-process one would have."""
        connection = self.running.get(pid)
        if connection is None:
            return
        try:
            if connection.recv(1):
                return
        except BlockingIOError:
            return
        except OSError:
            pass  # reset: gone as well
        self.selector.unregister(connection)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)

    def _into_child(self, connection: socket.socket) -> None:
        """Drop what belongs to the server: its signals, socket, wake-up pipe, connections."""
        connection.close()
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        if not self.stopping:
            self.listener.close()
        os.close(self.wake_read)
        os.close(self.wake_write)
        for other in self.running.values():
            other.close()


@dataclass(frozen=True)
class Command:
    fingerprint: str
    interpreter: str
    cwd: str
    umask: int
    ignored: tuple[int, ...]
    streams: tuple[tuple[str, str, bool, bool], ...]
    argv: list[str]
    env: dict[str, str]
    fds: list[int]

    @classmethod
    def parse(cls, fields: Sequence[str], fds: list[int]) -> Command:
        """The fields of ``launcher.run_request``."""
        fingerprint, interpreter, cwd, umask, ignored = fields[:5]
        rest = list(fields[5:])
        streams = []
        for _ in launcher.STREAMS:
            encoding, errors, line_buffering, write_through = rest[:4]
            streams.append((encoding, errors, line_buffering == "1", write_through == "1"))
            rest = rest[4:]
        count = int(rest[0])
        argv, variables = rest[1 : 1 + count], rest[1 + count :]
        if len(argv) != count:
            raise ValueError("argv cut short")
        env = dict(variable.split("=", 1) for variable in variables)
        ignoring = tuple(int(signum) for signum in ignored.split(",") if signum)
        if not set(ignoring) <= set(launcher.FORWARDED_SIGNALS):
            raise ValueError("only a forwarded signal can be ignored")
        return cls(
            fingerprint, interpreter, cwd, int(umask), ignoring, tuple(streams), argv, env, fds
        )

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)

    def run(self, go: int) -> NoReturn:
        """In the forked child: once the worker has told the launcher (a byte on ``go``),
        become the launcher's process, run the CLI, exit as it did."""
        code = 70
        try:
            started = os.read(go, 1) == b"g"
            os.close(go)
            if not started:
                os._exit(code)  # the launcher was not told: it runs the command itself
            os.setpgid(0, 0)
            for target, fd in enumerate(self.fds):
                os.dup2(fd, target)
            for fd in self.fds:
                if fd > 2:
                    os.close(fd)
            os.chdir(self.cwd)
            os.umask(self.umask)
            for signum in self.ignored:
                signal.signal(signum, signal.SIG_IGN)
            os.environ.clear()
            os.environ.update(self.env)
            time.tzset()
            with contextlib.suppress(locale.Error):
                locale.setlocale(locale.LC_CTYPE, "")
            self._streams()
            sys.argv = self.argv
            code = _run_cli()
        except BaseException:
            # a failure of the worker itself, not of the command: say so on the command's stderr
            traceback.print_exc()
            _flush()
        finally:
            os._exit(code)

    def _streams(self) -> None:
        """``sys.stdin``/``stdout``/``stderr`` over descriptors 0-2, set up as the launcher's
        interpreter set up its own (as CPython's ``create_stdio`` does)."""
        made = []
        for fd, (encoding, errors, line_buffering, write_through) in enumerate(self.streams):
            writing = fd > 0
            raw = io.FileIO(fd, "wb" if writing else "rb", closefd=False)
            raw.name = f"<{launcher.STREAMS[fd]}>"
            buffer: BinaryIO = raw
            if not (writing and write_through):  # CPython writes through only with -u
                size = os.fstat(fd).st_blksize
                size = size if size > 1 else io.DEFAULT_BUFFER_SIZE
                buffer = io.BufferedWriter(raw, size) if writing else io.BufferedReader(raw, size)
            made.append(
                io.TextIOWrapper(
                    buffer,
                    encoding,
                    errors,
                    newline="\n",
                    line_buffering=line_buffering,
                    write_through=write_through,
                )
            )
        sys.stdin, sys.stdout, sys.stderr = made
        for name, stream in zip(launcher.STREAMS, made, strict=True):
            setattr(sys, f"__{name}__", stream)


def _run_cli() -> int:
    """Run the CLI as the interpreter runs a script: the exit code it would end with."""
    from platformctl.cli import main

    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = _exit_code(exit_.code)
    except KeyboardInterrupt:
        _flush()
        # as CPython ends on an uncaught Ctrl-C: killed by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        raise
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    atexit._run_exitfuncs()
    return code if _flush() else 120


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _flush() -> bool:
    """Flush stdout and stderr as the interpreter does at exit; False if that failed."""
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            ok = False
    return ok

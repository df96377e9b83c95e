"""The ``platform`` entry point: hands the command to a running worker, else runs it here.

A worker (``platform worker start``, see ``platformctl.worker``) has already imported the CLI
and its gates, so a command it runs skips the 0.16-0.19 s of imports a new process pays. The
launcher sends its argv, cwd, environment, umask, how its standard streams are set up, and the
streams themselves (SCM_RIGHTS), forwards SIGINT/SIGTERM/SIGHUP to the command, and ends as
the command ended. A signal this process ignores (SIGINT in a script's ``platform ... &``,
SIGHUP under nohup) is not forwarded, and the command ignores it too, as it would in-process.
With no worker, ``PLATFORM_WORKER=off``, a worker of another installation or interpreter
setup, or anything unexpected before the command started, it runs the CLI in this process as
before, and says nothing: the output is the same either way.

Only the standard library's cheapest modules are imported here: this runs on every command.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
from collections.abc import Mapping, Sequence

PROTOCOL = b"platformctl-worker/2"
OFF_VARIABLE = "PLATFORM_WORKER"
# Read once, when typer and rich are imported: a worker started with other values would
# format help and errors differently, so they are part of what must match.
IMPORT_TIME_ENV = (
    "TYPER_USE_RICH",
    "TERMINAL_WIDTH",
    "_TYPER_FORCE_DISABLE_TERMINAL",
    "GITHUB_ACTIONS",
    "FORCE_COLOR",
    "PY_COLORS",
)
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# A request: a length, then NUL-separated fields; a reply: a kind and a number.
LENGTH = struct.Struct("!I")
REPLY = struct.Struct("!ci")
STARTED, ENDED, STALE, MISMATCH = b"p", b"x", b"s", b"m"
STREAMS = ("stdin", "stdout", "stderr")
# Options that find the user's shell among this process's parents (shellingham), which a
# worker's child does not have: run here, or they would find none.
SHELL_DETECTING = ("--show-completion", "--install-completion")


def socket_path(environ: Mapping[str, str] = os.environ) -> str:
    """Where this user's worker of this installation listens: in ``$XDG_RUNTIME_DIR`` or a
    uid-named folder of the temporary folder, named by the interpreter and package folder."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        folder = os.path.join(runtime, "platformctl")
    else:
        temporary = environ.get("TMPDIR") or "/tmp"
        folder = os.path.join(temporary, f"platformctl-{os.getuid()}")
    installation = f"{sys.executable}\0{os.path.dirname(os.path.abspath(__file__))}"
    return os.path.join(folder, f"worker-{digest(installation)}.sock")


def digest(text: str) -> str:
    """64-bit FNV-1a of ``text`` in hex (hashlib would cost this module an import)."""
    value = 0xCBF29CE484222325
    for byte in text.encode(errors="surrogateescape"):
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def fingerprint() -> str:
    """The installation as it is on disk: every file of the package and every folder on
    ``sys.path`` (installing or removing a distribution changes its folder), by their stats."""
    parts = []
    folders = [os.path.dirname(os.path.abspath(__file__))]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.name == "__pycache__":
                    continue
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                stat = entry.stat(follow_symlinks=False)
                parts.append(f"{entry.path}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}")
    for folder in sys.path:
        if not os.path.isabs(folder):
            continue  # depends on the cwd: ``interpreter`` tells those apart
        try:
            stat = os.stat(folder)
        except OSError:
            continue
        parts.append(f"{folder}:{stat.st_ino}:{stat.st_mtime_ns}")
    parts.sort()
    return digest("\n".join(parts))


def interpreter(environ: Mapping[str, str] = os.environ) -> str:
    """What decides which code runs and how, fixed when an interpreter starts: it must be the
    same in the worker as here, or the command would not behave as it does in-process."""
    settings = [
        sys.executable,
        repr([os.path.abspath(folder) for folder in sys.path]),
        repr(tuple(sys.flags)),
        sys.getfilesystemencoding(),
        sys.getfilesystemencodeerrors(),
        repr(sys.warnoptions),
        repr(sorted(sys._xoptions.items())),
        *(f"{name}={environ.get(name)}" for name in IMPORT_TIME_ENV),
    ]
    return digest("\0".join(settings))


def streams() -> list[str]:
    """How Python set up this process's standard streams (encoding, errors, buffering), so
    the worker's command gets the same; an error if one is missing."""
    spec = []
    for name in STREAMS:
        stream = getattr(sys, name)
        spec += [stream.encoding, stream.errors, str(int(stream.line_buffering))]
        spec.append(str(int(stream.write_through)))
    return spec


def ignored() -> str:
    """The forwarded signals this process ignores, comma-separated: its command ignores them."""
    return ",".join(str(int(signum)) for signum in FORWARDED_SIGNALS if _is_ignored(signum))


def _is_ignored(signum: int) -> bool:
    return signal.getsignal(signum) == signal.SIG_IGN


def request(kind: bytes, fields: Sequence[str]) -> bytes:
    body = b"\0".join([PROTOCOL, kind, *(os.fsencode(field) for field in fields)])
    return LENGTH.pack(len(body)) + body


def run_request() -> bytes:
    """This command as the worker reads it."""
    env = [f"{key}={value}" for key, value in os.environ.items()]
    umask = os.umask(0)
    os.umask(umask)
    fields = [fingerprint(), interpreter(), os.getcwd(), str(umask), ignored(), *streams()]
    return request(b"run", [*fields, str(len(sys.argv)), *sys.argv, *env])


def connect(path: str) -> socket.socket | None:
    """A connection to the worker at ``path`` if one listens there and is this user's, in a
    folder only this user can use; else None."""
    uid = os.getuid()
    folder = os.lstat(os.path.dirname(path))
    if folder.st_uid != uid or folder.st_mode & 0o077 or not os.path.isdir(os.path.dirname(path)):
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
        if peer_uid(client) != uid:
            client.close()
            return None
    except OSError:
        client.close()
        return None
    return client


def peer_uid(connection: socket.socket) -> int:
    """The user id of the process at the other end (SO_PEERCRED: pid, uid, gid)."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int(struct.unpack("3i", credentials)[1])


def receive_reply(connection: socket.socket) -> tuple[bytes, int] | None:
    data = b""
    while len(data) < REPLY.size:
        chunk = connection.recv(REPLY.size - len(data))
        if not chunk:
            return None
        data += chunk
    kind, value = REPLY.unpack(data)
    return kind, value


def through_worker() -> int | None:
    """The wait status of this command run by the worker, or None when it was not started
    there (so it is run here)."""
    if os.environ.get(OFF_VARIABLE) == "off" or any(a in SHELL_DETECTING for a in sys.argv):
        return None
    try:
        connection = connect(socket_path())
        if connection is None:
            return None
        message = run_request()
    except (OSError, AttributeError, ValueError):
        return None
    with connection:
        try:
            sent = socket.send_fds(connection, [message], [0, 1, 2])
            if sent < len(message):
                # never an empty send: once the worker has it all, the command may have run
                # and ended, and a send to its closed connection fails (it ran twice so)
                connection.sendall(message[sent:])
        except OSError:
            return None  # the worker has not all of it: it runs nothing
        try:
            reply = receive_reply(connection)
        except OSError:
            reply = None
        if reply is None or reply[0] != STARTED:
            # the worker starts a command only once it has told us (``worker.Server._run``)
            return None
        return _wait(connection, reply[1])


def _wait(connection: socket.socket, child: int) -> int:
    """The command runs as process group ``child``: forward signals to it until it ends."""

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(child, signum)
        except OSError:
            return  # it has ended

    for signum in FORWARDED_SIGNALS:
        if not _is_ignored(signum):
            signal.signal(signum, forward)
    try:
        reply = receive_reply(connection)
    except OSError:
        reply = None
    if reply is None or reply[0] != ENDED:
        sys.stderr.write("error: the platform worker ended before the command did\n")
        return 3 << 8
    return reply[1]


def end_as(status: int) -> None:
    """Exit as the command did: with its code, or killed by the same signal."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum != signal.SIGKILL:  # the one signal whose handler cannot be set
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def main() -> None:
    status = through_worker()
    if status is not None:
        end_as(status)
    from platformctl.cli import main as in_process

    in_process()


if __name__ == "__main__":
    main()

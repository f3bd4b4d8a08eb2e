"""Load benchmark: users-api against a raw-asyncpg ceiling and a tutorial implementation.

`make bench` runs this. It creates a throw-away database, starts the three servers (each
pinned to the server CPU), seeds 10,000 users, drives every scenario with wrk (pinned to
the other CPU) in alternating rounds, and prints medians, ratios, noise and the issue-5
targets as pass/fail. Servers are killed and the database dropped on every exit path.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
LUA = BENCH_DIR / "wrk" / "scenario.lua"

SEED_PASSWORD = "Bench-Seed-Password-2026"
ADMIN_USERNAME = "bench_admin"
ADMIN_EMAIL = "bench-admin@bench.example"
ADMIN_PASSWORD = "Bench-Admin-Password-2026"
SECRET_KEY = "bench-secret-key-" + "x" * 32

SERVERS = ("users-api", "raw", "tutorial")
# Named with --servers (each holds a pool: all of them and `before` at once pass
# PostgreSQL's default 100 connections).
DEPLOYMENTS = ("users-api-w2", "users-api-pgbouncer", "users-api-pgbouncer-prepared")
# Rows of users-api deployed otherwise, driven with the reads and the PATCH only: served
# by `serve --workers 2` (unpinned: both cores); through PgBouncer in transaction mode,
# Debian's 1.18 (DB_PGBOUNCER=true: unnamed statements) and 1.24 keeping prepared
# statements (scripts/build-pgbouncer; DB_PGBOUNCER=prepared).
VARIANTS = {
    "users-api-w2": ("get", "list", "patch"),
    "users-api-pgbouncer": ("get", "list", "patch"),
    "users-api-pgbouncer-prepared": ("get", "list", "patch"),
}
SCENARIOS = ("get", "list", "patch", "post_user", "token", "mixed")
TITLES = {
    "get": "GET /users/{id}",
    "list": "GET /users?limit=50",
    "patch": "PATCH /users/{id}",
    "post_user": "POST /users (argon2)",
    "token": "POST /auth/token (argon2)",
    "mixed": "GET /users/{id} during POSTs",
}
MIB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- options ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cpus = sorted(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--db-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/users_api_bench"
        ),
        help="throw-away database to create, use and drop (default: %(default)s)",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per scenario")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    p.add_argument(
        "--writer-connections",
        type=int,
        default=16,
        help="connections POSTing during the mixed scenario (16)",
    )
    p.add_argument("--users", type=int, default=10_000, help="seeded users (10000)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 s")
    p.add_argument(
        "--servers", default=",".join(SERVERS), help="of " + ",".join((*SERVERS, *DEPLOYMENTS))
    )
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="subset of " + ",".join(SCENARIOS)
    )
    p.add_argument(
        "--server-cpus",
        default=str(cpus[0]) if len(cpus) > 1 else "",
        help="CPU list for the servers (taskset -c); '' = no pinning",
    )
    p.add_argument(
        "--wrk-cpus",
        default=",".join(map(str, cpus[1:])) if len(cpus) > 1 else "",
        help="CPU list for wrk; '' = no pinning",
    )
    p.add_argument("--json", type=Path, help="also write every run's numbers to this file")
    p.add_argument(
        "--py-spy", type=Path, help="record users-api with py-spy: PATH-SCENARIO-roundN.txt"
    )
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    p.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of an earlier users-api (with its .venv): served as 'before', in the"
        " same alternating rounds, so one run gives the table before and after a change",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup = 2.0, 2, 1.0
    args.servers = [s for s in args.servers.split(",") if s]
    if args.baseline is not None:
        if not (args.baseline / ".venv" / "bin" / "users-api").exists():
            p.error(f"{args.baseline}/.venv/bin/users-api not found: run `make install` there")
        if "before" not in args.servers:  # named or not: one server, one row
            args.servers.insert(1, "before")
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for name in args.servers:
        if name not in (*SERVERS, *DEPLOYMENTS, "before"):
            p.error(f"unknown server {name!r}")
    if "before" in args.servers and args.baseline is None:
        p.error("server 'before' needs --baseline")
    if len(set(args.servers)) != len(args.servers):
        p.error("a server is named twice in --servers")
    for name in args.scenarios:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}")
    if args.rounds < 1 or args.duration <= 0 or args.connections < args.threads:
        p.error("need rounds >= 1, duration > 0 and connections >= threads")
    if shutil.which("taskset") is None:
        args.server_cpus = args.wrk_cpus = ""
    return args


def cpu_list(spec: str) -> set[int]:
    found: set[int] = set()
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        found.update(range(int(lo), int(hi or lo) + 1))
    return found


def pinned(cpus: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


# --- wrk -------------------------------------------------------------------------------


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        sys.exit(
            "bench: wrk is not installed and this is not root; install it with "
            "`sudo apt-get install -y wrk` (Debian/Ubuntu) and run again."
        )
    log("wrk is missing: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(cmd, env=env, check=False)
    path = shutil.which("wrk")
    if not path:
        sys.exit("bench: could not install wrk with apt-get; install it and run again.")
    return path


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non2xx: int
    socket_errors: int


async def run_wrk(
    wrk: str,
    cpus: str,
    url: str,
    *,
    mode: str,
    duration: float,
    connections: int,
    threads: int,
    ids_file: Path,
    auth: str | None,
    token_on: bool,
) -> WrkResult:
    tag = secrets.token_hex(3)
    command = pinned(
        cpus,
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "5s",
            "-s",
            str(LUA),
            url,
            "--",
            mode,
            str(ids_file),
            tag,
            auth or "-",
            "1" if token_on else "0",
            SEED_PASSWORD,
        ],
    )
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{text}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = data["duration_us"] / 1e6
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return WrkResult(
        requests=data["requests"],
        seconds=seconds,
        rps=data["requests"] / seconds if seconds else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=socket_errors + data["status"],
        non2xx=data["status"],
        socket_errors=socket_errors,
    )


# --- servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http(
    method: str, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    app_name: str = ""  # its backends' application_name in pg_stat_activity
    auth: str | None = None
    has_token_endpoint: bool = True
    verifies_tokens: bool = False  # checks the JWT's signature and claims (users-api, raw)
    cpus: str | None = None  # CPUs it runs on: None, the servers' (--server-cpus); "": all

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, workdir: Path, cpus: str) -> None:
        self.log_path = workdir / f"{self.name}.log"
        command = [*self.command, "--host", "127.0.0.1", "--port", str(self.port)]
        log(f"starting {self.name}: {' '.join(command)}")
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                pinned(cpus if self.cpus is None else self.cpus, command),
                cwd=workdir,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; log:\n{self.tail_log()}")
            with contextlib.suppress(OSError):
                if http("GET", self.url + "/healthz")[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; log:\n{self.tail_log()}")

    def tail_log(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def rss_bytes(self) -> int:
        """Resident memory of the server process and all its descendants."""
        if self.proc is None:
            return 0
        total = 0
        for pid in process_tree(self.proc.pid):
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) of the server process and its descendants."""
        if self.proc is None:
            return 0.0
        ticks = 0
        for pid in process_tree(self.proc.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # the command name (field 2) may hold spaces: split after its ')'
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / CLOCK_TICKS

    def login(self, username: str, password: str) -> str | None:
        """A Bearer header value, or None when the server has no /auth/token (404)."""
        body = urllib.parse.urlencode({"username": username, "password": password}).encode()
        status, payload = http(
            "POST",
            self.url + "/api/v1/auth/token",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"{self.name}: login as {username} gave {status}: {payload!r}")
        return "Bearer " + json.loads(payload)["access_token"]


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def make_servers(
    names: list[str],
    sa_url: str,
    baseline: Path | None = None,
    baseline_url: str = "",
    pooled_url: str = "",
    prepared_url: str = "",
) -> list[Server]:
    python = str(VENV_BIN / "python")
    reference = str(BENCH_DIR / "reference")
    uvicorn = [python, "-m", "uvicorn", "--app-dir", reference]
    common = {"DATABASE_URL": sa_url, "PYTHONUNBUFFERED": "1"}
    # users-api and raw sign and check their access tokens with the same key and TTL
    tokens = {"SECRET_KEY": SECRET_KEY, "ACCESS_TOKEN_TTL_SECONDS": "86400"}

    def pooled(name: str, url: str, mode: str) -> Server:
        """users-api through a PgBouncer at `url` (DB_PGBOUNCER=`mode`), migrated direct."""
        return Server(
            name,
            [str(VENV_BIN / "users-api"), "serve"],
            {
                **common,
                **tokens,
                "DATABASE_URL": url,
                "MIGRATIONS_DATABASE_URL": sa_url,
                "DB_PGBOUNCER": mode,
            },
            app_name="users-api",
            verifies_tokens=True,
        )

    table = {
        "users-api": Server(
            "users-api",
            [str(VENV_BIN / "users-api"), "serve"],
            {
                **common,
                **tokens,
                "FIRST_ADMIN_EMAIL": ADMIN_EMAIL,
                "FIRST_ADMIN_USERNAME": ADMIN_USERNAME,
                "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD,
            },
            app_name="users-api",
            verifies_tokens=True,
        ),
        # an earlier users-api (--baseline), under its own settings as the current one
        "before": Server(
            "before",
            [str((baseline or Path()) / ".venv" / "bin" / "users-api"), "serve"],
            {
                **common,
                # its own copy of the seeded database: its migrations may be older
                "DATABASE_URL": baseline_url,
                **tokens,
                "FIRST_ADMIN_EMAIL": ADMIN_EMAIL,
                "FIRST_ADMIN_USERNAME": ADMIN_USERNAME,
                "FIRST_ADMIN_PASSWORD": ADMIN_PASSWORD,
            },
            app_name="users-api",
            verifies_tokens=True,
        ),
        "users-api-w2": Server(
            "users-api-w2",
            [str(VENV_BIN / "users-api"), "serve", "--workers", "2"],
            {**common, **tokens},
            app_name="users-api",
            verifies_tokens=True,
            cpus="",
        ),
        "users-api-pgbouncer": pooled("users-api-pgbouncer", pooled_url, "true"),
        "users-api-pgbouncer-prepared": pooled(
            "users-api-pgbouncer-prepared", prepared_url, "prepared"
        ),
        # the ceiling: the same work as users-api, no access log
        "raw": Server(
            "raw",
            [*uvicorn, "raw_app:app", "--no-access-log"],
            {**common, **tokens},
            app_name="bench-raw",
            verifies_tokens=True,
        ),
        # as the tutorials run it: `uvicorn main:app`, with uvicorn's access log on;
        # the default engine sets no application_name
        "tutorial": Server("tutorial", [*uvicorn, "tutorial_app:app"], common),
    }
    return [table[name] for name in names]


# --- database --------------------------------------------------------------------------


@dataclass
class Database:
    url: str  # postgresql://.../name

    @property
    def name(self) -> str:
        return urllib.parse.urlsplit(self.url).path.lstrip("/")

    @property
    def admin_url(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit(parts._replace(path="/postgres"))

    @property
    def sqlalchemy_url(self) -> str:
        return "postgresql+asyncpg://" + self.url.split("://", 1)[1]

    async def create(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()


def argon2_hasher() -> Any:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    from users_api.security import passwords

    return PasswordHash(
        (
            Argon2Hasher(
                time_cost=passwords.ARGON2_TIME_COST,
                memory_cost=passwords.ARGON2_MEMORY_KIB,
                parallelism=passwords.ARGON2_PARALLELISM,
            ),
        )
    )


async def seed(db: Database, count: int, ids_file: Path) -> None:
    from uuid_utils.compat import uuid7

    hasher = argon2_hasher()
    hashed = hasher.hash(SEED_PASSWORD)
    rows = [
        (uuid7(), f"seed{i:05d}@bench.example", f"seed_{i:05d}", f"Seed User {i}", hashed, 1)
        for i in range(count)
    ]
    conn = await asyncpg.connect(db.url)
    try:
        await conn.copy_records_to_table(
            "users",
            records=rows,
            columns=["id", "email", "username", "full_name", "password_hash", "version"],
        )
        # Every server is driven as the admin (the list is admin-only, and the reads and
        # PATCHes touch other users). users-api creates it at start-up (FIRST_ADMIN_*);
        # without users-api in the run, it is created here.
        admin = await conn.fetchval(
            "SELECT 1 FROM users WHERE lower(username) = lower($1) OR lower(email) = lower($2)",
            ADMIN_USERNAME,
            ADMIN_EMAIL,
        )
        if admin is None:
            await conn.execute(
                "INSERT INTO users (id, email, username, password_hash, is_admin, version)"
                " VALUES ($1, $2, $3, $4, true, 1)",
                uuid7(),
                ADMIN_EMAIL,
                ADMIN_USERNAME,
                hasher.hash(ADMIN_PASSWORD),
            )
        await conn.execute("VACUUM ANALYZE users")
    finally:
        await conn.close()
    ids_file.write_text("".join(f"{row[0]}\n" for row in rows))  # noqa: ASYNC240


async def copy_for_baseline(db: Database, target: Database, baseline: Path) -> None:
    """The --baseline server's own database: its own migrations, then the same users (the
    same ids and timestamps, so every server answers with the same JSON)."""
    await target.create()
    migrate = subprocess.run(  # noqa: ASYNC221
        [str(baseline / ".venv" / "bin" / "users-api"), "migrate"],
        env={**os.environ, "DATABASE_URL": target.sqlalchemy_url},
        check=False,
    )
    if migrate.returncode != 0:
        raise RuntimeError("the baseline's users-api migrate failed")
    columns = [
        "id", "email", "username", "full_name", "password_hash", "is_active", "is_admin",
        "version", "auth_version", "created_at", "updated_at",
    ]  # fmt: skip
    source = await asyncpg.connect(db.url)
    try:
        rows = await source.fetch(f"SELECT {', '.join(columns)} FROM users")
    finally:
        await source.close()
    conn = await asyncpg.connect(target.url)
    try:
        await conn.copy_records_to_table("users", records=rows, columns=columns)
        await conn.execute("VACUUM ANALYZE users")
    finally:
        await conn.close()


def measure_hash(cpus: str, samples: int = 7) -> float:
    """Median seconds of one argon2id hash with the service's parameters, on `cpus`."""
    hasher = argon2_hasher()
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpu_list(cpus))
    try:
        hasher.hash("warm-up-password")
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            hasher.hash("Bench-Password-Long-42!")
            times.append(time.perf_counter() - start)
    finally:
        os.sched_setaffinity(0, before)
    return statistics.median(times)


def measure_estimate(cpus: str, samples: int = 7) -> float:
    """Median seconds of one password strength estimate (zxcvbn, as a sign-up runs it) of
    the password the POST /users scenario sends, on `cpus`: the contract's other cost of
    a sign-up, which no reference server pays."""
    from users_api.security import strength

    strength.load()
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpu_list(cpus))
    try:
        times = []
        for n in range(samples):
            start = time.perf_counter()
            strength.estimate(
                "Bench-Password-Long-42!", user_inputs=(f"u{n}@bench.example", f"u{n}")
            )
            times.append(time.perf_counter() - start)
    finally:
        os.sched_setaffinity(0, before)
    return statistics.median(times)


# --- one run ---------------------------------------------------------------------------


@dataclass
class Run:
    server: str
    scenario: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    non2xx: int
    rss_mib: float
    rss_max_mib: float
    new_backends: int
    peak_backends: int
    cpu_ms: float  # server CPU per request answered, all threads
    writer_rps: float | None = None


class Monitor:
    """Samples the server's RSS and the database's backends while a run goes on."""

    def __init__(self, conn: asyncpg.Connection, *dbs: Database) -> None:
        self.conn = conn
        self.names = [db.name for db in dbs]  # the run's database, and --baseline's

    async def sessions(self) -> int:
        value = await self.conn.fetchval(
            "SELECT sum(sessions) FROM pg_stat_database WHERE datname = ANY($1::text[])",
            self.names,
        )
        return int(value or 0)

    async def backend_pids(self, app_name: str) -> set[int]:
        rows = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])"
            " AND backend_type = 'client backend' AND application_name = $2",
            self.names,
            app_name,
        )
        return {row["pid"] for row in rows}


async def measured(
    monitor: Monitor, server: Server, body: Any
) -> tuple[Any, float, float, int, int, float]:
    """Run `body` (a coroutine) while sampling; returns result, rss, rss max, new, peak, cpu.

    New backends: the database's `pg_stat_database.sessions` delta (only the server under
    load connects during a run; exact, catches even short-lived backends), or the server's
    backend pids (by application_name) seen during the run but not before, if more.
    Peak: the most backends of this server seen at once (sampled every 0.25 s).
    CPU: the server's CPU seconds spent while `body` ran.
    """
    sessions_before = await monitor.sessions()
    seen = await monitor.backend_pids(server.app_name)
    pids_before = set(seen)
    peak = len(seen)
    rss_max = server.rss_bytes()
    cpu_before = server.cpu_seconds()
    task = asyncio.ensure_future(body)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            pids = await monitor.backend_pids(server.app_name)
            peak = max(peak, len(pids))
            seen |= pids
            rss_max = max(rss_max, server.rss_bytes())
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    result = task.result()
    cpu = server.cpu_seconds() - cpu_before
    await asyncio.sleep(1.0)  # let backends report their session to pg_stat_database
    rss = server.rss_bytes()
    new = max(await monitor.sessions() - sessions_before, len(seen - pids_before))
    return result, rss / MIB, max(rss_max, rss) / MIB, new, peak, cpu


async def run_scenario(
    args: argparse.Namespace,
    wrk: str,
    monitor: Monitor,
    server: Server,
    scenario: str,
    round_no: int,
    ids_file: Path,
    duration: float,
) -> Run | None:
    if server.verifies_tokens and server.has_token_endpoint:
        # a fresh admin token per run, so no run outlives a token's TTL (the first request
        # of each run then checks it in full, the rest find it in the server's cache)
        server.auth = server.login(ADMIN_USERNAME, ADMIN_PASSWORD)
    token_on = server.has_token_endpoint
    if scenario == "token" and not token_on:
        return None

    def drive(mode: str, connections: int) -> Any:
        return run_wrk(
            wrk,
            args.wrk_cpus,
            server.url,
            mode=mode,
            duration=duration,
            connections=connections,
            threads=min(args.threads, connections),
            ids_file=ids_file,
            auth=server.auth,
            token_on=token_on,
        )

    profiler = None
    if args.py_spy and server.name == "users-api" and round_no > 0:
        profiler = start_py_spy(args.py_spy, server, f"{scenario}-round{round_no}", duration)

    async def body() -> tuple[WrkResult, WrkResult | None]:
        if scenario == "mixed":
            reader, writer = await asyncio.gather(
                drive("get", args.connections), drive("argon2", args.writer_connections)
            )
            return reader, writer
        return await drive(scenario, args.connections), None

    (result, writer), rss, rss_max, new, peak, cpu = await measured(monitor, server, body())
    answered = result.requests + (writer.requests if writer else 0)
    if profiler is not None:
        profiler.wait()
    return Run(
        server=server.name,
        scenario=scenario,
        round=round_no,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        non2xx=result.non2xx,
        rss_mib=rss,
        rss_max_mib=rss_max,
        new_backends=new,
        peak_backends=peak,
        cpu_ms=cpu * 1000 / answered if answered else 0.0,
        writer_rps=writer.rps if writer else None,
    )


def start_py_spy(base: Path, server: Server, run: str, duration: float) -> Any:
    py_spy = shutil.which("py-spy") or "/tmp/pyspy-venv/bin/py-spy"
    assert server.proc is not None
    out = base.with_name(f"{base.stem}-{run}.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"py-spy recording users-api into {out}")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server.proc.pid),
            "--duration",
            str(max(1, int(duration) - 1)),
            "--rate",
            "100",
            "--nonblocking",  # blocking mode stops the process per sample: 10x slower
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=out.with_suffix(".log").open("wb"),
    )


# --- report ----------------------------------------------------------------------------


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    rss_max_mib: float
    new_backends: int
    peak_backends: int
    cpu_ms: float
    cv_pct: float
    spread_pct: float
    rounds: int
    writer_rps: float | None


def summarize(runs: list[Run]) -> Cell:
    rates = [r.rps for r in runs]
    mid = statistics.median(rates)
    cv = statistics.pstdev(rates) / statistics.fmean(rates) * 100 if len(rates) > 1 else 0.0
    spread = (max(rates) - min(rates)) / mid * 100 if mid else 0.0
    writers = [r.writer_rps for r in runs if r.writer_rps is not None]
    return Cell(
        rps=mid,
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        rss_mib=runs[-1].rss_mib,
        rss_max_mib=max(r.rss_max_mib for r in runs),
        new_backends=sum(r.new_backends for r in runs),
        peak_backends=max(r.peak_backends for r in runs),
        cpu_ms=statistics.median(r.cpu_ms for r in runs),
        cv_pct=cv,
        spread_pct=spread,
        rounds=len(runs),
        writer_rps=statistics.median(writers) if writers else None,
    )


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def report(
    args: argparse.Namespace,
    runs: list[Run],
    auth_note: str,
    hash_times: list[float],
    hash_threads: int,
    server_cpu_count: int,
    estimate_s: float,
) -> list[tuple[str, str, str]]:
    hash_s = statistics.median(hash_times)
    timed = ", ".join(f"{t * 1000:.1f}" for t in hash_times)
    cells: dict[tuple[str, str], Cell] = {}
    for server in args.servers:
        for scenario in args.scenarios:
            chosen = [r for r in runs if r.server == server and r.scenario == scenario]
            if chosen:
                cells[server, scenario] = summarize(chosen)

    def cell(server: str, scenario: str) -> Cell | None:
        return cells.get((server, scenario))

    bound_threads = min(hash_threads, server_cpu_count)
    bound = bound_threads / hash_s
    out = []
    out.append("")
    out.append(
        f"users-api benchmark: 1 worker, {args.connections} connections, {args.duration:g} s x "
        f"{args.rounds} rounds, {args.users} seeded users; servers on CPU "
        f"{args.server_cpus or 'any'}, wrk on CPU {args.wrk_cpus or 'any'}"
    )
    out.append(f"auth: {auth_note}")
    out.append(
        f"argon2 bound: one hash = {hash_s * 1000:.1f} ms (median of the timings before each"
        f" round: {timed} ms; users_api.security.passwords parameters);"
        f" {hash_threads} hash threads, {server_cpu_count} server CPU(s) ->"
        f" bound = {bound_threads} / {hash_s * 1000:.1f} ms = {bound:.1f} req/s"
        f" (nominal {hash_threads} / t = {hash_threads / hash_s:.1f} req/s)"
    )
    # A sign-up also estimates the password's strength (one at a time, on the GIL).
    sign_up_bound = 1 / (hash_s / bound_threads + estimate_s)
    out.append(
        f"sign-up bound: one strength estimate = {estimate_s * 1000:.1f} ms -> bound ="
        f" 1 / ({hash_s * 1000:.1f} ms / {bound_threads} + {estimate_s * 1000:.1f} ms)"
        f" = {sign_up_bound:.1f} req/s"
    )
    out.append(
        "columns: req/s median [min-max spread %, CV %]; latency medians in ms; errors summed "
        "(socket + non-2xx); RSS MiB at end of last round (max seen); new PG backends summed "
        "over measured runs (peak backends in use); CPU: median server CPU ms per request"
        " answered, all threads (steadier than req/s on a noisy machine)"
    )
    header = (
        f"{'scenario':<30} {'server':<28} {'req/s':>8} {'spread':>7} {'CV':>5} {'p50':>8} "
        f"{'p99':>8} {'errors':>6} {'RSS':>12} {'new PG':>7} {'peak':>5} {'CPU':>6}"
    )
    for scenario in args.scenarios:
        out.append("")
        out.append(header)
        for server in args.servers:
            c = cell(server, scenario)
            if c is None:
                out.append(f"{TITLES[scenario]:<30} {server:<28} {'skipped':>8}")
                continue
            extra = f"  (writers {c.writer_rps:.0f} req/s)" if c.writer_rps is not None else ""
            out.append(
                f"{TITLES[scenario]:<30} {server:<28} {c.rps:>8.0f} {c.spread_pct:>6.1f}% "
                f"{c.cv_pct:>4.1f}% {c.p50_ms:>8.2f} {c.p99_ms:>8.2f} {c.errors:>6} "
                f"{c.rss_mib:>5.1f} ({c.rss_max_mib:>4.0f}) {c.new_backends:>7} "
                f"{c.peak_backends:>5} {c.cpu_ms:>6.3f}{extra}"
            )
        u, raw, tut = cell("users-api", scenario), cell("raw", scenario), cell("tutorial", scenario)
        if u is not None:
            out.append(
                f"{'':<30} ratios: users-api/raw {fmt_ratio(u.rps, raw and raw.rps)} req/s, "
                f"{fmt_ratio(u.p99_ms, raw and raw.p99_ms)} p99, "
                f"{fmt_ratio(raw and raw.cpu_ms, u.cpu_ms)} CPU/request (raw's/ours); "
                f"users-api/tutorial {fmt_ratio(u.rps, tut and tut.rps)} req/s"
            )
        for variant in VARIANTS:
            v = cell(variant, scenario)
            if v is not None and u is not None:
                out.append(
                    f"{'':<30} {variant}: {fmt_ratio(v.rps, u.rps)} users-api's req/s;"
                    f" per core of server CPU {1000 / v.cpu_ms:.0f} req/s"
                    f" (users-api {1000 / u.cpu_ms:.0f}; raw"
                    f" {f'{1000 / raw.cpu_ms:.0f}' if raw else '-'})"
                )
        before = cell("before", scenario)
        if before is not None:
            out.append(
                f"{'':<30} before: before/raw {fmt_ratio(before.rps, raw and raw.rps)} req/s, "
                f"{fmt_ratio(raw and raw.cpu_ms, before.cpu_ms)} CPU/request (raw's/its); "
                f"users-api/before {fmt_ratio(u and u.rps, before.rps)} req/s"
            )

    # noise
    noisy = sorted(cells.items(), key=lambda kv: kv[1].cv_pct, reverse=True)
    if noisy and args.rounds > 1:
        (server, scenario), worst = noisy[0]
        cvs = [c.cv_pct for c in cells.values()]
        out.append("")
        out.append(
            f"noise: req/s CV across rounds median {statistics.median(cvs):.1f}%, worst "
            f"{worst.cv_pct:.1f}% ({server}, {TITLES[scenario]}; spread {worst.spread_pct:.1f}%)"
        )
    elif args.rounds == 1:
        out.append("")
        out.append("noise: one round only, no spread to report")

    # targets
    checks: list[tuple[str, str, str]] = []

    def check(name: str, ok: bool | None, detail: str) -> None:
        verdict = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        checks.append((verdict, name, detail))

    for scenario, title in (("get", "GET by id"), ("list", "list")):
        u, raw, tut = cell("users-api", scenario), cell("raw", scenario), cell("tutorial", scenario)
        if u and raw:
            check(
                f"{title}: req/s >= 75% of raw",
                u.rps >= 0.75 * raw.rps,
                f"{u.rps:.0f} vs {0.75 * raw.rps:.0f} ({u.rps / raw.rps:.0%} of raw)",
            )
            check(
                f"{title}: p99 <= 2x raw p99",
                u.p99_ms <= 2 * raw.p99_ms,
                f"{u.p99_ms:.2f} ms vs {2 * raw.p99_ms:.2f} ms",
            )
        if u and tut:
            check(
                f"{title}: req/s >= 5x tutorial",
                u.rps >= 5 * tut.rps,
                f"{u.rps:.0f} vs {5 * tut.rps:.0f} ({u.rps / tut.rps:.1f}x)",
            )
    u, raw = cell("users-api", "patch"), cell("raw", "patch")
    if u and raw:
        check(
            "PATCH: req/s >= 60% of raw",
            u.rps >= 0.6 * raw.rps,
            f"{u.rps:.0f} vs {0.6 * raw.rps:.0f} ({u.rps / raw.rps:.0%} of raw)",
        )
    for scenario, title in (("post_user", "POST /users"), ("token", "POST /auth/token")):
        if scenario not in args.scenarios or "users-api" not in args.servers:
            continue
        u, raw = cell("users-api", scenario), cell("raw", scenario)
        ceiling = f"; raw reaches {raw.rps / bound:.0%}" if raw else ""
        if u is None:
            check(f"{title}: >= 90% of argon2 bound", None, "auth not landed (404)" + ceiling)
        else:
            check(
                f"{title}: >= 90% of argon2 bound",
                u.rps >= 0.9 * bound,
                f"{u.rps:.1f} vs {0.9 * bound:.1f} req/s ({u.rps / bound:.0%} of bound{ceiling})",
            )
            if scenario == "post_user":
                check(
                    f"{title}: >= 90% of hash + strength-estimate bound",
                    u.rps >= 0.9 * sign_up_bound,
                    f"{u.rps:.1f} vs {0.9 * sign_up_bound:.1f} req/s"
                    f" ({u.rps / sign_up_bound:.0%} of that bound)",
                )
    u_mixed, u_get = cell("users-api", "mixed"), cell("users-api", "get")
    if u_mixed and u_get:
        check(
            "GET p99 during argon2 POSTs <= 3x idle",
            u_mixed.p99_ms <= 3 * u_get.p99_ms,
            f"{u_mixed.p99_ms:.2f} ms vs {3 * u_get.p99_ms:.2f} ms (idle {u_get.p99_ms:.2f})",
        )
    u_runs = [r for r in runs if r.server == "users-api"]
    if u_runs:
        new = sum(r.new_backends for r in u_runs)
        by = {s: sum(r.new_backends for r in u_runs if r.scenario == s) for s in args.scenarios}
        check(
            "no new PG backends after warm-up",
            new == 0,
            f"{new} new ({', '.join(f'{s} {n}' for s, n in by.items() if n) or 'none'})",
        )
        rss_max = max(r.rss_max_mib for r in u_runs)
        check("RSS <= 100 MiB per worker", rss_max <= 100, f"max {rss_max:.1f} MiB")
        per_round = [
            max(r.rss_mib for r in u_runs if r.round == n)
            for n in sorted({r.round for r in u_runs})
        ]
        growth = per_round[-1] - per_round[0]
        limit = max(5.0, 0.10 * per_round[0])
        check(
            "RSS flat across rounds",
            None if len(per_round) < 2 else growth <= limit,
            f"end of each round: {', '.join(f'{v:.1f}' for v in per_round)} MiB "
            f"(growth {growth:+.1f}, limit {limit:.1f})",
        )
        bad = {s: sum(r.errors for r in u_runs if r.scenario == s) for s in args.scenarios}
        bad = {s: n for s, n in bad.items() if n}
        if bad:
            out.append("")
            out.append(f"WARNING: users-api had request errors: {bad} (see server log)")
    out.append("")
    out.append("targets (users-api, medians):")
    for verdict, name, detail in checks:
        out.append(f"  [{verdict}] {name:<40} {detail}")
    print("\n".join(out), flush=True)
    return checks


# --- main ------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, workdir: Path) -> int:
    wrk = ensure_wrk()
    db = Database(args.db_url)
    db_before = Database(f"{args.db_url}_before")
    stack = contextlib.ExitStack()
    pooled_url = prepared_url = ""
    if "users-api-pgbouncer" in args.servers or "users-api-pgbouncer-prepared" in args.servers:
        from tests import pgbouncer

        if "users-api-pgbouncer" in args.servers:
            if not pgbouncer.available():
                raise RuntimeError("users-api-pgbouncer needs pgbouncer: apt-get install it")
            pooled_url = stack.enter_context(pgbouncer.pgbouncer(db.sqlalchemy_url))
        if "users-api-pgbouncer-prepared" in args.servers:
            if not pgbouncer.recent_available():
                raise RuntimeError("users-api-pgbouncer-prepared: run scripts/build-pgbouncer")
            prepared_url = stack.enter_context(
                pgbouncer.pgbouncer(
                    db.sqlalchemy_url, binary=pgbouncer.RECENT, prepared_statements=200
                )
            )
    servers = make_servers(
        args.servers,
        db.sqlalchemy_url,
        args.baseline,
        db_before.sqlalchemy_url,
        pooled_url,
        prepared_url,
    )
    before = next((s for s in servers if s.name == "before"), None)
    ids_file = workdir / "ids.txt"
    runs: list[Run] = []
    monitor_conn: asyncpg.Connection | None = None
    try:
        log(f"creating database {db.name}")
        await db.create()
        users_api = next((s for s in servers if s.name == "users-api"), None)
        if users_api is not None:  # first: it applies the migrations
            users_api.start(workdir, args.server_cpus)
            users_api.wait_ready()
        else:
            migrate = subprocess.run(  # noqa: ASYNC221
                [str(VENV_BIN / "users-api"), "migrate"],
                env={**os.environ, "DATABASE_URL": db.sqlalchemy_url},
                cwd=workdir,
                check=False,
            )
            if migrate.returncode != 0:
                raise RuntimeError("users-api migrate failed")
        log(f"seeding {args.users} users")
        await seed(db, args.users, ids_file)
        if before is not None:
            await copy_for_baseline(db, db_before, args.baseline)
        for server in servers:
            if server is not users_api:
                server.start(workdir, args.server_cpus)
        for server in servers:
            server.wait_ready()

        auth_note = "-"
        for server in servers:
            token = server.login(ADMIN_USERNAME, ADMIN_PASSWORD)
            server.has_token_endpoint = token is not None
            server.auth = token
            if server.name == "users-api":
                auth_note = (
                    "users-api issued an admin token; requests send Authorization: Bearer"
                    if token
                    else "users-api answered 404 on POST /api/v1/auth/token (auth not landed):"
                    " users-api is driven WITHOUT a token and its /auth/token run is skipped"
                )
            elif token is None:
                raise RuntimeError(f"{server.name}: POST /api/v1/auth/token answered 404")
        auth_note += (
            "; raw verifies its admin token (HS256, the same key) and checks the caller in"
            " each statement, as users-api does; tutorial only requires a Bearer header"
        )

        same_json(servers, ids_file.read_text().split()[0])
        forged_refused(servers, ids_file.read_text().split()[0])

        hash_threads = _hash_threads()
        server_cpu_count = len(cpu_list(args.server_cpus)) if args.server_cpus else os.cpu_count()
        # This VM's speed drifts within a run: the hash is timed again before each round,
        # and the bound uses the median of those timings.
        hash_times = [measure_hash(args.server_cpus)]
        log(f"one argon2 hash: {hash_times[0] * 1000:.1f} ms; hash threads {hash_threads}")
        estimate_s = measure_estimate(args.server_cpus)
        log(f"one strength estimate: {estimate_s * 1000:.1f} ms")

        monitor_conn = await asyncpg.connect(db.admin_url)
        monitor = Monitor(monitor_conn, db, *([db_before] if before is not None else []))

        log(f"warm-up: {args.warmup:g} s per scenario per server")
        for server in servers:
            for scenario in args.scenarios:
                if scenario in VARIANTS.get(server.name, SCENARIOS):
                    await run_scenario(
                        args, wrk, monitor, server, scenario, 0, ids_file, args.warmup
                    )
        for round_no in range(1, args.rounds + 1):
            if round_no > 1:
                hash_times.append(measure_hash(args.server_cpus))
                log(f"one argon2 hash: {hash_times[-1] * 1000:.1f} ms")
            for scenario in args.scenarios:
                for server in servers:
                    if scenario not in VARIANTS.get(server.name, SCENARIOS):
                        continue
                    run = await run_scenario(
                        args, wrk, monitor, server, scenario, round_no, ids_file, args.duration
                    )
                    if run is None:
                        continue
                    runs.append(run)
                    log(
                        f"round {round_no}/{args.rounds} {TITLES[scenario]:<28} "
                        f"{server.name:<28} {run.rps:8.0f} req/s p50 {run.p50_ms:7.2f} ms "
                        f"p99 {run.p99_ms:7.2f} ms err {run.errors} rss {run.rss_mib:.0f} MiB "
                        f"new PG {run.new_backends} cpu {run.cpu_ms:.3f} ms/req"
                    )
                    assert server.proc is not None
                    if server.proc.poll() is not None:
                        raise RuntimeError(f"{server.name} died; log:\n{server.tail_log()}")
        hash_s = statistics.median(hash_times)
        checks = report(
            args, runs, auth_note, hash_times, hash_threads, server_cpu_count or 1, estimate_s
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "options": {k: str(v) for k, v in vars(args).items()},
                        "argon2_hash_seconds": hash_s,
                        "argon2_hash_seconds_per_round": hash_times,
                        "strength_estimate_seconds": estimate_s,
                        "runs": [asdict(r) for r in runs],
                        "checks": checks,
                    },
                    indent=2,
                )
            )
        for server in servers:
            log(f"{server.name} log: {server.log_path}")
        return 0
    finally:
        if monitor_conn is not None:
            with contextlib.suppress(Exception):
                await monitor_conn.close()
        for server in servers:
            server.stop()
        if not args.keep_db:
            with contextlib.suppress(Exception):
                await db.drop()
                log(f"dropped database {db.name}")
            if before is not None:
                with contextlib.suppress(Exception):
                    await db_before.drop()
        stack.close()


def same_json(servers: list[Server], user_id: str) -> None:
    """The servers must answer the measured reads with the same JSON, or the race is unfair."""
    answers: dict[str, tuple[Any, Any]] = {}
    for server in servers:
        headers = {"Authorization": server.auth} if server.auth else {}
        one = http("GET", f"{server.url}/api/v1/users/{user_id}", headers=headers)
        page = http("GET", f"{server.url}/api/v1/users?limit=50", headers=headers)
        if one[0] != 200 or page[0] != 200:
            raise RuntimeError(f"{server.name}: GET answered {one[0]} / {page[0]}")
        answers[server.name] = (json.loads(one[1]), json.loads(page[1]))
    first, *others = answers
    for name in others:
        expected, answer = answers[first], answers[name]
        if name == "before":  # an earlier users-api: the fields it has, equal
            expected = _fields_of(expected, answer)
            # and its own cursors (their format may change between versions)
            expected, answer = _without_cursor(expected), _without_cursor(answer)
            # and the seeded users: the bench's admin is set up by each version's rules
            # (since "Setup admins start verified", its admin is verified, not before's)
            expected, answer = _seeded_only(expected), _seeded_only(answer)
        if answer != expected:
            which = 0 if answer[0] != expected[0] else 1
            shown = (answer[which], expected[which])
            if which == 1:  # the first item of the page that differs, or the rest of it
                pairs = zip(answer[1]["items"], expected[1]["items"], strict=False)
                shown = next(
                    ((a, e) for a, e in pairs if a != e),
                    (_without_items(answer[1]), _without_items(expected[1])),
                )
            what = "the list" if which else "GET /users/{id}"
            raise RuntimeError(
                f"{name} and {first} answer with different JSON ({what}):"
                f" {shown[0]!r} against {shown[1]!r}"
            )
    log(f"same JSON from {', '.join(answers)} for GET /users/{{id}} and the list")


def _without_items(page: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in page.items() if name != "items"}


def _seeded_only(answers: tuple[Any, Any]) -> tuple[Any, Any]:
    one, page = answers
    items = [item for item in page["items"] if not item["is_admin"]]
    return one, {**page, "items": items}


def _without_cursor(answers: tuple[Any, Any]) -> tuple[Any, Any]:
    one, page = answers
    return one, {name: value for name, value in page.items() if name != "next_cursor"}


def _fields_of(model: Any, earlier: Any) -> Any:
    """`model` cut to the user fields `earlier` has (a later version may add fields)."""
    if isinstance(model, dict) and isinstance(earlier, dict):
        return {key: _fields_of(model[key], earlier[key]) for key in earlier if key in model}
    if isinstance(model, list | tuple) and isinstance(earlier, list | tuple):
        return type(model)(_fields_of(a, b) for a, b in zip(model, earlier, strict=False))
    return model


def forged_refused(servers: list[Server], user_id: str) -> None:
    """A server that verifies tokens must refuse one whose signature is not the key's."""
    for server in servers:
        if not server.verifies_tokens or server.auth is None:
            continue
        signing_input, _, signature = server.auth.rpartition(".")
        forged = f"{signing_input}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
        status, _ = http(
            "GET", f"{server.url}/api/v1/users/{user_id}", headers={"Authorization": forged}
        )
        if status != 401:
            raise RuntimeError(f"{server.name} answered {status} to a forged token, not 401")
    log("servers that verify tokens refuse a forged one (401)")


def _hash_threads() -> int:
    from users_api.security.passwords import Passwords

    return Passwords().concurrency


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="users-api-bench-"))
    loop = asyncio.new_event_loop()
    task = loop.create_task(bench(args, workdir))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        code = loop.run_until_complete(task)
    except asyncio.CancelledError:
        log("interrupted: servers stopped, database dropped")
        code = 130
    finally:
        loop.close()
    log(f"logs and ids kept in {workdir}")
    sys.exit(code)


if __name__ == "__main__":
    main()

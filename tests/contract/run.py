"""Contract test: Schemathesis against `/api/openapi.json` of a real `handoff-server`.

For each database (a fresh SQLite file, a fresh PostgreSQL database) it starts the server on a free
loopback port with rate limits off, creates a project and an agent with the CLI, obtains a visitor
token, an agent token and the project's secret key, and runs `schemathesis run --checks all` once
per token. Any failure of any run fails the test: the document and the server must agree.

Run by `cargo xtask contract` (and `cargo xtask test`) with the Python of the pinned virtualenv:

    python tests/contract/run.py --server target/debug/handoff-server [--db sqlite,postgres]

Environment: `HANDOFF_SKIP_PG=1` skips PostgreSQL (as the Rust suites do);
`HANDOFF_CONTRACT_EXAMPLES` (cases per operation and phase, default 30) and
`HANDOFF_CONTRACT_SEED` (default fixed, so a failure reproduces; `random` for a new one each run)
tune the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PG_ADMIN = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "test", "-v", "ON_ERROR_STOP=1", "-qAt"]
AGENT_EMAIL = "contract@example.com"
AGENT_PASSWORD = "contract-password-1"


def log(msg: str) -> None:
    print(f"contract: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(server: str, env: dict[str, str], *args: str) -> dict[str, str]:
    """Runs a CLI subcommand of the server; its `key=value` lines."""
    out = subprocess.run([server, *args], env=env, check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def wait_healthy(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"handoff-server exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError("handoff-server did not become healthy in 60 s")


class Database:
    """A fresh database: a SQLite file in a temporary folder, or a PostgreSQL database dropped after."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.pg_name: str | None = None
        if kind == "sqlite":
            self.url = f"sqlite://{workdir / 'contract.db'}?mode=rwc"
        else:
            self.pg_name = f"handoff_contract_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            subprocess.run(["psql", *PG_ADMIN, "-c", f"CREATE DATABASE {self.pg_name}"], check=True)
            self.url = f"postgres://postgres@127.0.0.1:5432/{self.pg_name}"

    def drop(self) -> None:
        if self.pg_name:
            subprocess.run(
                ["psql", *PG_ADMIN, "-c", f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)"],
                check=False,
            )


def schemathesis_run(args: argparse.Namespace, base: str, name: str, token: str, report: Path, extra: list[str]) -> bool:
    st = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(st),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{base}/api/openapi.json",
        "--url",
        base,
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        str(args.examples),
        "--workers",
        str(args.workers),
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "40",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report),
        *extra,
    ]
    if args.seed != "random":
        cmd += ["--seed", args.seed]
    log(f"{name}: schemathesis run ({args.examples} examples per operation)")
    started = time.monotonic()
    out = report / "output.txt"
    with out.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    text = out.read_text(errors="replace")
    summary = [line for line in text.splitlines()[-12:] if line.strip()]
    log(f"{name}: {'passed' if rc == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s: {summary[-1] if summary else ''}")
    if rc != 0:
        print(text, file=sys.stderr)
    return rc == 0


def run_db(args: argparse.Namespace, kind: str, reports: Path) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix=f"handoff-contract-{kind}-"))
    db = Database(kind, workdir)
    proc = None
    try:
        env = {**os.environ, "DATABASE_URL": db.url, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        env.pop("REDIS_URL", None)
        project = cli(args.server, env, "project", "create", "--name", "Contract", "--origin", "*")
        cli(args.server, env, "agent", "create", "--project", project["project_id"], "--email", AGENT_EMAIL,
            "--name", "Contract Agent", "--password", AGENT_PASSWORD)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server_log = (reports / f"{kind}-server.log").open("w")
        proc = subprocess.Popen(
            [args.server, "serve", "--addr", f"127.0.0.1:{port}", "--limits", "off"],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        wait_healthy(base, proc)
        visitor = post(base, "/api/widget/session", {"project_key": project["public_key"]})["visitor_token"]
        agent = post(base, "/api/agents/login", {"email": AGENT_EMAIL, "password": AGENT_PASSWORD})["token"]
        runs = [
            ("visitor", visitor, []),
            # Signing out would revoke the token the rest of the run uses.
            ("agent", agent, ["--exclude-path", "/api/agents/logout"]),
            ("secret key", project["secret_key"], []),
        ]
        ok = True
        for name, token, extra in runs:
            report = reports / kind / name.replace(" ", "-")
            report.mkdir(parents=True, exist_ok=True)
            ok &= schemathesis_run(args, base, f"{kind}/{name}", token, report, extra)
            if proc.poll() is not None:
                log(f"{kind}: handoff-server exited ({proc.returncode}); see {reports / f'{kind}-server.log'}")
                return False
        return ok
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="the handoff-server binary")
    p.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    p.add_argument("--reports", default=None, help="folder for the reports (default: a temporary one)")
    p.add_argument("--examples", type=int, default=int(os.environ.get("HANDOFF_CONTRACT_EXAMPLES", "30")))
    p.add_argument("--seed", default=os.environ.get("HANDOFF_CONTRACT_SEED", "20261130"))
    # One worker: with two, Hypothesis parses sources with `ast` from two threads, which CPython
    # 3.11 sometimes fails ("AST constructor recursion depth mismatch", a runtime error).
    p.add_argument("--workers", default="1")
    args = p.parse_args()
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    if os.environ.get("HANDOFF_SKIP_PG"):
        kinds = [k for k in kinds if k != "postgres"]
    reports = Path(args.reports) if args.reports else Path(tempfile.mkdtemp(prefix="handoff-contract-"))
    reports.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = {kind: run_db(args, kind, reports) for kind in kinds}
    failed = [k for k, ok in results.items() if not ok]
    log(f"{len(results) - len(failed)} passed, {len(failed)} failed ({', '.join(kinds)}) in "
        f"{time.monotonic() - started:.0f} s; reports in {reports}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

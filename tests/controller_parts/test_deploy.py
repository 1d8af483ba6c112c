"""deploy/: the systemd unit, the container file, the CI jobs and the pre-commit hook.

The CI comment scripts are run for real: the GitLab one against a local notes API, the GitHub one
(under node, when present) against a recording stand-in for the Octokit client that github-script
hands it. Command lines in these files are parsed with the real CLI parser, so a renamed flag fails.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "gpu-reconciler.service"
GITHUB = DEPLOY / "ci" / "github" / "reconcile-plan.yml"
GITLAB = DEPLOY / "ci" / "gitlab" / "reconcile-plan.gitlab-ci.yml"
MARKER = "<!-- gpu-reconciler-plan -->"


def cli_accepts(argv: list[str]) -> None:
    """Parse `argv` (after the program name) with the real parser; fails on unknown flags."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse reports errors by exiting
        raise AssertionError(f"reconcile {' '.join(argv)} is not a valid command line") from exc


def has_command(name: str) -> bool:
    actions = build_parser()._subparsers._group_actions  # type: ignore[union-attr]
    return any(name in (a.choices or ()) for a in actions)


# -- systemd -------------------------------------------------------------------------------------

def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_has_the_hardening_directives() -> None:
    svc = parse_unit(UNIT.read_text())["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one.get("DynamicUser") == "yes" or one.get("User") == "gpu-reconciler"
    expected = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                "StateDirectory": "gpu-reconciler", "ProtectKernelTunables": "yes",
                "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
                "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
                "SystemCallArchitectures": "native"}
    for key, value in expected.items():
        assert one.get(key) == value, f"{key}={one.get(key)!r}, want {value!r}"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in svc["SystemCallFilter"]
    assert "ovirt-password:/etc/gpu-reconciler/ovirt-password" in svc["LoadCredential"]
    assert "/run/credentials/gpu-reconciler.service/ovirt-password" in UNIT.read_text()
    # No secret is ever put in the environment of the unit.
    assert not any("PASSWORD" in e.upper() for e in svc.get("Environment", []))


def test_unit_runs_the_controller_in_observe_mode_with_state_in_its_state_directory() -> None:
    svc = parse_unit(UNIT.read_text())["Service"]
    (exec_start,) = svc["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/reconcile") and Path(argv[0]).is_absolute()
    assert argv[argv.index("controller") + 1] == "/etc/gpu-reconciler/specs"
    assert argv[argv.index("--mode") + 1] == "observe"
    assert argv[argv.index("--state") + 1] == "${STATE_DIRECTORY}/state.db"
    cli_accepts([a.replace("${STATE_DIRECTORY}", "/var/lib/gpu-reconciler") for a in argv[1:]])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart exists; point it at this checkout's own entry point.
    reconcile = Path(sys.executable).with_name("reconcile")
    assert reconcile.exists(), "the reconcile entry point is not installed beside this Python"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/gpu-reconciler/bin/reconcile", str(reconcile)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    problems = [ln for ln in (result.stdout + result.stderr).splitlines()
                if UNIT.name in ln or "Unknown" in ln]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


# -- container -----------------------------------------------------------------------------------

def containerfile_stages() -> list[list[tuple[str, str]]]:
    text = (DEPLOY / "container" / "Containerfile").read_text().replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        if op.upper() == "FROM":
            stages.append([])
        stages[-1].append((op.upper(), rest.strip()))
    return stages


def test_containerfile_runtime_stage() -> None:
    stages = containerfile_stages()
    final = stages[-1]
    ops = dict(final)   # last of each instruction in the runtime stage
    assert ops["FROM"] == "python:3.11-slim"
    installs = " ".join(v for o, v in final if o == "RUN")
    for package in ("libxml2", "openssh-client"):
        assert re.search(rf"apt-get install[^&]*\b{package}\b", installs), package
    user = ops["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(ops["ENTRYPOINT"]) == ["reconcile"]
    assert "pip install" in installs


def test_containerfile_copies_paths_that_exist() -> None:
    for stage in containerfile_stages():
        for op, value in stage:
            if op == "COPY" and not value.startswith("--from"):
                for source in value.split()[:-1]:
                    assert (REPO / source).exists(), f"COPY {source}: no such path in the repo"


# -- CI: GitHub ----------------------------------------------------------------------------------

def run_lines(steps: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for step in steps:
        for line in str(step.get("run", "")).splitlines():
            lines.append(line.strip())
    return lines


def reconcile_argv(line: str) -> list[str]:
    """The arguments of a `reconcile ...` shell line, without redirections."""
    words = shlex.split(line)
    words = words[words.index("reconcile") + 1:]
    return [w for w in words if not re.match(r"^\d?>|^<", w) and w not in ("plan.md", "plan.log")]


def test_github_workflow_validates_plans_and_comments_once() -> None:
    wf = yaml.safe_load(GITHUB.read_text())
    triggers = wf.get("on", wf.get(True))       # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    assert wf["permissions"]["pull-requests"] == "write"
    assert wf["env"]["PLAN_MARKER"] == MARKER
    steps = wf["jobs"]["plan"]["steps"]
    lines = run_lines(steps)
    validate = [ln for ln in lines if ln.startswith("reconcile validate")]
    # the password is given to the Plan step only: validate checks the files (--offline)
    assert validate == ["reconcile validate --offline specs/"]
    cli_accepts(reconcile_argv(validate[0]))
    (plan,) = [ln for ln in lines if re.search(r"reconcile .*plan specs/", ln)]
    assert "-o markdown" in plan and "--out plan.json" in plan
    cli_accepts(reconcile_argv(plan))
    (comment,) = [s for s in steps if str(s.get("uses", "")).startswith("actions/github-script")]
    script = comment["with"]["script"]
    assert "PLAN_MARKER" in script and "updateComment" in script and "createComment" in script


NODE_HARNESS = r"""
const fs = require('fs');
const [script, state] = [fs.readFileSync(process.argv[2], 'utf8'), JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))];
const calls = [];
const github = {
  paginate: async (fn, params) => (await fn(params)).data,
  rest: { issues: {
    listComments: async (p) => { calls.push(['list', p]); return { data: state.comments }; },
    updateComment: async (p) => { calls.push(['update', p]); },
    createComment: async (p) => { calls.push(['create', p]); },
  } },
};
const context = { serverUrl: 'https://github.com', runId: 7, repo: { owner: 'o', repo: 'r' },
                  payload: { pull_request: { number: 12, head: { sha: '0123456789abcdef' } } } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', script)(require, github, context)
  .then(() => console.log(JSON.stringify(calls)))
  .catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed here")
def test_github_comment_script_creates_then_updates_one_comment(tmp_path: Path) -> None:
    wf = yaml.safe_load(GITHUB.read_text())
    (step,) = [s for s in wf["jobs"]["plan"]["steps"] if "github-script" in str(s.get("uses"))]
    (tmp_path / "script.js").write_text(step["with"]["script"])
    (tmp_path / "harness.js").write_text(NODE_HARNESS)
    (tmp_path / "plan.md").write_text("## Plan\n2 hosts reboot\n")

    def run(comments: list[dict[str, Any]]) -> list[list[Any]]:
        (tmp_path / "state.json").write_text(json.dumps({"comments": comments}))
        out = subprocess.run(["node", "harness.js", "script.js", "state.json"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PLAN_MARKER": MARKER})
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    calls = run([{"id": 1, "user": {"type": "User"}, "body": f"quoting {MARKER}"}])
    assert [c[0] for c in calls] == ["list", "create"]
    body = calls[1][1]["body"]
    assert body.startswith(MARKER) and "2 hosts reboot" in body and calls[1][1]["issue_number"] == 12

    calls = run([{"id": 1, "user": {"type": "User"}, "body": "lgtm"},
                 {"id": 5, "user": {"type": "Bot"}, "body": f"{MARKER}\nold plan"}])
    assert [c[0] for c in calls] == ["list", "update"]
    assert calls[1][1]["comment_id"] == 5 and "2 hosts reboot" in calls[1][1]["body"]


# -- CI: GitLab ----------------------------------------------------------------------------------

def gitlab_job() -> dict[str, Any]:
    return yaml.safe_load(GITLAB.read_text())["reconcile-plan"]


def gitlab_python() -> str:
    (block,) = [s for s in gitlab_job()["script"] if "<<'PY'" in s]
    return block.split("<<'PY'\n", 1)[1].rsplit("PY", 1)[0]


def test_gitlab_job_validates_plans_and_uses_the_notes_api() -> None:
    job = gitlab_job()
    assert any("merge_request_event" in r["if"] for r in job["rules"])
    assert job["variables"]["PLAN_MARKER"] == MARKER
    script = [str(s) for s in job["script"]]
    assert script[0] == "reconcile validate specs/"
    cli_accepts(reconcile_argv(script[0]))
    (plan,) = [s for s in script if re.search(r"reconcile .*plan specs/", s)]
    assert "-o markdown" in plan and "--out plan.json" in plan
    cli_accepts(reconcile_argv(plan))
    code = gitlab_python()
    compile(code, "gitlab-note", "exec")
    assert "GITLAB_PLAN_TOKEN" in code and "/notes" in code
    assert "plan.json" in job["artifacts"]["paths"]


@pytest.fixture
def notes_api() -> Iterator[dict[str, Any]]:
    """A tiny GitLab notes API: GET (paged by 2), POST, PUT; records every call."""
    state: dict[str, Any] = {"notes": [{"id": 1, "body": "first!"}, {"id": 2, "body": "lgtm"},
                                       {"id": 3, "body": "nit"}], "calls": [], "token": None}

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            state["token"] = self.headers["PRIVATE-TOKEN"]
            found = re.search(r"page=(\d+)", self.path.split("?")[1].replace("per_page", "pp"))
            assert found is not None, self.path
            page = int(found[1])
            state["calls"].append(("GET", self.path))
            notes = state["notes"][(page - 1) * 2:page * 2]
            more = len(state["notes"]) > page * 2
            self._reply(200, notes, {"X-Next-Page": str(page + 1) if more else ""})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            note = {"id": 100 + len(state["notes"]), "body": body["body"]}
            state["notes"].append(note)
            state["calls"].append(("POST", self.path))
            self._reply(201, note)

        def do_PUT(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            note_id = int(self.path.rsplit("/", 1)[1])
            for note in state["notes"]:
                if note["id"] == note_id:
                    note["body"] = body["body"]
            state["calls"].append(("PUT", self.path))
            self._reply(200, {"id": note_id})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/api/v4"
    yield state
    server.shutdown()
    server.server_close()


def test_gitlab_note_script_creates_then_updates_one_note(tmp_path: Path,
                                                          notes_api: dict[str, Any]) -> None:
    env = {**os.environ, "CI_API_V4_URL": notes_api["url"], "CI_PROJECT_ID": "42",
           "CI_MERGE_REQUEST_IID": "7", "GITLAB_PLAN_TOKEN": "glpat-test",
           "PLAN_MARKER": MARKER, "CI_COMMIT_SHORT_SHA": "abc1234",
           "CI_PIPELINE_URL": "https://gitlab.example.com/p/-/pipelines/9"}
    code = gitlab_python()

    def run(plan: str) -> None:
        (tmp_path / "plan.md").write_text(plan)
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr

    run("## Plan\n1 VM restarts\n")
    ours = [n for n in notes_api["notes"] if MARKER in n["body"]]
    assert len(ours) == 1 and "1 VM restarts" in ours[0]["body"]
    assert notes_api["calls"][-1][0] == "POST"
    assert notes_api["calls"][-1][1] == "/api/v4/projects/42/merge_requests/7/notes"
    assert notes_api["token"] == "glpat-test"

    run("## Plan\nno changes\n")
    ours = [n for n in notes_api["notes"] if MARKER in n["body"]]
    assert len(ours) == 1 and "no changes" in ours[0]["body"]
    assert notes_api["calls"][-1][0] == "PUT"
    assert len(notes_api["notes"]) == 4


# -- pre-commit ----------------------------------------------------------------------------------

def test_pre_commit_hook_names_an_existing_command() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "reconcile-validate"]
    assert hook["entry"] == "reconcile validate"
    assert "--offline" in hook["args"]          # no password or CA file on a workstation
    files = re.compile(hook["files"])
    assert files.search("specs/fleet.yaml") and files.search("specs/site/a.yml")
    assert not files.search("docs/fleet.yaml") and not files.search("specs/notes.md")
    program, *argv = hook["entry"].split()
    assert program == "reconcile" and has_command(argv[0])
    cli_accepts(argv + list(hook.get("args", [])) + (["specs/x.yaml"]
                                                      if hook.get("pass_filenames", True) else []))
    example = yaml.safe_load((DEPLOY / "pre-commit" / "pre-commit-config.example.yaml").read_text())
    assert example["repos"][0]["hooks"][0]["id"] == "reconcile-validate"


# -- what the CI jobs and the container install ---------------------------------------------------

def test_ci_jobs_install_a_pinned_source_never_a_bare_index_name() -> None:
    from packaging.requirements import Requirement
    github = yaml.safe_load(GITHUB.read_text())["env"]["RECONCILER_PACKAGE"]
    gitlab = yaml.safe_load(GITLAB.read_text())["reconcile-plan"]["variables"]["RECONCILER_PACKAGE"]
    for text in (github, gitlab):
        req = Requirement(text)
        assert req.name == "gpu-reconciler"
        # A direct reference pinned to a tag or commit: no index can substitute another package.
        assert req.url and req.url.startswith("git+https://") and "@" in req.url.rsplit("/", 1)[1]
    before = " ".join(yaml.safe_load(GITLAB.read_text())["reconcile-plan"]["before_script"])
    assert re.search(r"apt-get install .*\bgit\b", before)      # pip needs git for git+https


# -- several replicas sharing PostgreSQL -------------------------------------------------------------

HA_UNIT = DEPLOY / "systemd" / "gpu-reconciler-ha@.service"
KUBE = DEPLOY / "kubernetes" / "gpu-reconciler.yaml"


def test_the_replica_unit_shares_postgresql_with_the_same_hardening() -> None:
    single = {k: v[-1] for k, v in parse_unit(UNIT.read_text())["Service"].items()}
    svc = parse_unit(HA_UNIT.read_text())["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                "CapabilityBoundingSet", "RestrictAddressFamilies", "SystemCallArchitectures",
                "MemoryDenyWriteExecute", "ProtectProc", "DynamicUser", "TimeoutStopSec"):
        assert one.get(key) == single.get(key), key
    (exec_start,) = svc["ExecStart"]
    argv = shlex.split(exec_start)
    state = argv[argv.index("--state") + 1]
    assert state.startswith("postgresql://") and ":" not in state.split("@")[0][13:], state
    assert argv[argv.index("--listen") + 1] == "127.0.0.1:%i"
    cli_accepts([a.replace("%i", "9180").replace("%H", "admin-1") for a in argv[1:]])
    # The database password comes as a credential, never in the environment or the URL.
    assert "pgpass:/etc/gpu-reconciler/pgpass" in svc["LoadCredential"]
    assert not any("PASSWORD" in e.upper() for e in svc.get("Environment", []))


def test_the_kubernetes_deployment_runs_two_replicas_on_postgresql() -> None:
    docs = list(yaml.safe_load_all(KUBE.read_text()))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    args = [a.replace("$(POD_NAME)", "gpu-reconciler-abc") for a in container["args"]]
    cli_accepts(args)
    state = args[args.index("--state") + 1]
    assert state.startswith("postgresql://") and "@" in state
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]          # from a Secret, never inline
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # A SIGTERM'd apply may take 4 minutes to reach a safe point.
    assert pod["terminationGracePeriodSeconds"] >= 240
    assert any(d["kind"] == "PodDisruptionBudget" for d in docs)


def test_the_container_installs_the_postgres_extra() -> None:
    text = (DEPLOY / "container" / "Containerfile").read_text()
    assert "'.[postgres]'" in text

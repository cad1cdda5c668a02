"""Zero network (issue 13): no name lookup, no connection, no device id, from any entry point.

ONNX Runtime >= 1.29 uploads telemetry on Linux and macOS about 9 s after a session opens, unless
ORT_DISABLE_TELEMETRY=1 is set before it initialises; `desktop/__init__.py` sets it (setdefault).
The slow tests run real workloads (workload.py: `generate` + `info`, `python -m desktop`, the library
from another program, `export` with its parity checks, the idle app) for 20 s each, all at once,
each inside an empty network namespace (netwatch.py: fake DNS on loopback, listeners on 80/443,
strace of connect()), and assert zero lookups, zero connections and no device id written. The control runs the same
generate workload with ORT_DISABLE_TELEMETRY=0 (a value the user set, which we keep) and must be
seen looking up Microsoft's collector: that proves the harness can fail.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.namespaces import unshare_or_skip

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SECONDS = 20  # well past the ~9 s after which ONNX Runtime starts its uploader
# ONNX Runtime suppresses telemetry on CI services it recognises (the names in its binary); the
# workloads run without them so that only ORT_DISABLE_TELEMETRY decides, as on a user's machine.
CI_VARIABLES = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER")


def _can_watch() -> list[str]:
    """The unshare prefix (a user namespace where allowed: no root needed), or skip saying why."""
    prefix = unshare_or_skip("net", "mount")
    for tool in ("ip", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    return prefix


def _env(home: Path, **changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES and k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home / "home"), XDG_CACHE_HOME=str(home / "home" / ".cache"),
               DIFFUSION_STUDIO_HOME=str(home / "studio"), QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    env.update(changes)
    return env


def _start(unshare: list[str], tmp: Path, name: str, workload: list[str], **env_changes):
    folder = tmp / name
    folder.mkdir()
    report = folder / "report.json"
    cmd = [*unshare, sys.executable, str(HERE / "netwatch.py"), str(report), "--",
           sys.executable, str(HERE / "workload.py"), *workload]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(folder, **env_changes), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, folder, report


WORKLOADS = {  # name -> (workload arguments, what its output must say it did)
    "generate": (["generate"], "generate runs"),
    "module": (["module"], "python -m desktop generate runs"),
    "library": (["library"], "library generate runs"),
    "export": (["export"], "export runs"),
    "app": (["app"], "the app was idle on ['"),
}


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """Every workload, run at the same time (each in its own namespace); name -> result."""
    unshare = _can_watch()
    tmp = tmp_path_factory.mktemp("netwatch")
    runs = {}
    for name, (args, _) in WORKLOADS.items():
        if name == "export" and not _has("torch"):
            continue  # the engine extra is not installed: its test skips
        extra = [] if name == "app" else [str(tmp / f"out-{name}")]
        runs[name] = _start(unshare, tmp, name, [*args, str(SECONDS), *extra])
    runs["control"] = _start(unshare, tmp, "control", ["generate", str(SECONDS), str(tmp / "out-control")],
                             ORT_DISABLE_TELEMETRY="0")
    results = {}
    for name, (proc, folder, report) in runs.items():
        output, _ = proc.communicate(timeout=600)
        assert report.is_file(), f"{name}: netwatch wrote no report:\n{output}"
        data = json.loads(report.read_text())
        assert data["returncode"] == 0, f"{name}: the workload failed:\n{output}"
        data["output"] = output
        data["device_id_dir"] = folder / "home" / ".cache" / "Microsoft" / "DeveloperTools"
        results[name] = data
    return results


def _silent(result: dict) -> None:
    assert result["dns"] == [], f"name lookups: {sorted(set(result['dns']))}\n{result['output']}"
    assert result["tcp"] == [], f"connections to the loopback listeners on ports {result['tcp']}"
    assert result["connects"] == [], "connect() calls:\n" + "\n".join(result["connects"])
    assert not result["device_id_dir"].exists(), f"ONNX Runtime wrote {result['device_id_dir']}"


@pytest.mark.slow
def test_the_harness_sees_telemetry_when_the_opt_out_is_undone(watched):
    control = watched["control"]
    assert any(name.endswith("events.data.microsoft.com") for name in control["dns"]), control
    assert control["device_id_dir"].exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_no_lookup_no_connection_no_device_id(watched, name):
    """generate + info, `python -m desktop`, the library in another program, export's parity checks
    and the idle app, each for SECONDS with ONNX Runtime sessions open."""
    if name not in watched:
        pytest.skip("export needs the engine extra")
    assert WORKLOADS[name][1] in watched[name]["output"], watched[name]["output"]
    _silent(watched[name])


# --------------------------------------------------------------------------------------------
# Every entry point sets the opt-out before ONNX Runtime is imported (fast; no namespace needed)

PROBE = r"""
import os, sys, importlib.abc
seen = []
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime" and not seen:
            seen.append(os.environ.get("ORT_DISABLE_TELEMETRY"))
        return None
sys.meta_path.insert(0, Probe())
try:
    exec(sys.argv[1])
except SystemExit:
    pass
print("ORT_DISABLE_TELEMETRY at import:", seen)
"""

ENTRY_POINTS = {
    "library: desktop.runtime.bundle": "import desktop.runtime.bundle",
    "library: desktop.runtime.pngmeta.versions": "from desktop.runtime import pngmeta; pngmeta.versions()",
    "python -m desktop info": "import runpy; sys.argv = ['desktop', 'info', 'digits']; runpy.run_module('desktop', run_name='__main__')",
    "diffusion-studio generate": "from desktop.cli import main; main(['generate', '--model', 'digits', '--steps', '2', '--quiet', '--out', sys.argv[2]])",
    "export's parity checks": "import export.parity, onnxruntime",
}


@pytest.mark.slow
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("user_value", [None, "0"])
def test_every_entry_point_opts_out_before_onnxruntime_loads(entry, user_value, tmp_path):
    if entry.startswith("export") and not _has("torch"):
        pytest.skip("export needs the engine extra")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    if user_value is not None:
        env["ORT_DISABLE_TELEMETRY"] = user_value  # the user's choice is kept
    out = subprocess.run([sys.executable, "-c", PROBE, ENTRY_POINTS[entry], str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    expected = "1" if user_value is None else user_value
    assert f"ORT_DISABLE_TELEMETRY at import: ['{expected}']" in out.stdout, out.stdout + out.stderr


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


LATE = "import onnxruntime, warnings; warnings.simplefilter('always'); import desktop"


@pytest.mark.parametrize("code,user_value,warned", [
    (LATE, None, True),  # the host loaded ONNX Runtime first: telemetry is on, and we say so
    (LATE, "1", False),  # ... but it had opted out itself
    ("import desktop, onnxruntime", None, False),
])
def test_a_program_that_loaded_onnxruntime_first_is_warned(code, user_value, warned):
    from desktop import TELEMETRY_WARNING

    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    if user_value is not None:
        env["ORT_DISABLE_TELEMETRY"] = user_value
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (TELEMETRY_WARNING in out.stderr) == warned, out.stderr
    assert "Traceback" not in out.stderr

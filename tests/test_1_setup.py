"""Section 1, Setup, and the project's own set-up. The setup cell installs what is missing on Colab and Kaggle
(never what is there): a failed install of a required package stops with advice, torch-fidelity (needed only
for FID) is optional; locally it installs nothing and names requirements.txt. On a fresh machine:
the README's two commands make and use a virtual environment, and every documented papermill command creates
the folder it writes into; .ci/run runs the same commands and stops on CI when ../shared is missing; the
test tools are pinned; every kernel the tests start is this interpreter, without ipywidgets; and
tests/conftest.py keeps the tests that share a slow fixture in one process under `pytest -n 2`."""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import conftest
import pytest
from conftest import ROOT, SLOW_SHARED_WORK, group_of, kernel_environment, needs_shared, notebook_json

# ---------------------------------------------------------------------------------------------------------
# The setup cell: what is missing is installed; only torch-fidelity may fail


@pytest.fixture
def pip_on_kaggle(nb, monkeypatch):
    """The setup cell on Kaggle, where kagglehub and torch_fidelity are missing: pip's commands are recorded and
    exit with pip.returncode; each cache invalidation is recorded."""
    pip = types.SimpleNamespace(commands=[], returncode=1, invalidated=0)
    find_spec = nb.importlib.util.find_spec
    monkeypatch.setattr(nb, "RUNTIME", "Kaggle")
    monkeypatch.setattr(
        nb.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("kagglehub", "torch_fidelity") else find_spec(name, *a),
    )
    monkeypatch.setattr(
        nb.subprocess,
        "run",
        lambda command, **kw: (
            pip.commands.append(command) or types.SimpleNamespace(returncode=pip.returncode)
        ),
    )

    def invalidate():
        pip.invalidated += 1

    monkeypatch.setattr(nb.importlib, "invalidate_caches", invalidate)
    return pip


def test_a_failed_install_of_a_required_package_stops_with_advice(nb, pip_on_kaggle):
    with pytest.raises(ModuleNotFoundError, match="Internet"):
        nb.install_missing(["torch", "kagglehub"], required=True)
    assert pip_on_kaggle.commands[0][-1] == "kagglehub" and "torch" not in pip_on_kaggle.commands[0]
    assert pip_on_kaggle.invalidated


def test_a_failed_install_of_torch_fidelity_does_not_stop_the_notebook(nb, pip_on_kaggle):
    """On Kaggle with the internet off only FID needs it: training must still run."""
    assert nb.install_missing(["torch_fidelity"], required=False) == ["torch-fidelity"]
    pip_on_kaggle.returncode = 0
    assert nb.install_missing(["torch_fidelity"], required=False) == []
    commands = len(pip_on_kaggle.commands)
    assert nb.install_missing(["torch", "PIL"], required=True) == []  # nothing missing: no pip at all
    assert len(pip_on_kaggle.commands) == commands == 2


def test_locally_nothing_is_installed_and_requirements_txt_is_named(nb, monkeypatch):
    monkeypatch.setattr(nb.subprocess, "run", lambda command, **kw: pytest.fail("pip ran on a local machine"))
    assert nb.RUNTIME == "local"
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here.*pip install -r requirements.txt"):
        nb.install_missing(["torch", "no_such_module_here"], required=True)


def test_only_torch_fidelity_is_optional(nb):
    assert nb.OPTIONAL == ["torch_fidelity"] and "torch_fidelity" not in nb.REQUIRED
    assert nb.install_missing(["torch", "no_such_module_here"], required=False) == ["no_such_module_here"]
    assert (
        nb.install_missing(["PIL", "torch_fidelity"], required=False) == []
    )  # installed here, by import names


# ---------------------------------------------------------------------------------------------------------
# The README's commands, .ci/run and setup_and_run.sh


def readme_commands():
    """The README's first two code blocks, one line each: (set up and run the QUICK notebook, run the tests)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    setup, tests = (block.strip() for block in blocks[:2])
    assert "\n" not in setup and "\n" not in tests  # each command on its own line
    return setup, tests


def script_commands(path):
    """The lines of a shell script that run python (the system's or .venv's)."""
    lines = [re.sub(r"^if ! |; then$", "", line.strip()) for line in path.read_text().splitlines()]
    return [line for line in lines if re.match(r'("\$python"|python3|\.venv/bin/python) ', line)]


def test_readme_commands_make_and_use_a_virtual_environment():
    """Debian 12 and Ubuntu 24.04 refuse `pip install` into the system Python ("externally-managed-
    environment") and have no `python`, only `python3`; a bare `pip` may belong to another interpreter.
    So: setup_and_run.sh makes .venv with python3, and everything after runs .venv's own python."""
    setup, tests = readme_commands()
    assert setup == "bash setup_and_run.sh" and tests == ".venv/bin/python -m pytest -q -n 2"
    script = ROOT / "setup_and_run.sh"
    commands = script_commands(script)
    assert commands[0] == '"$python" -m venv .venv' and 'python="${PYTHON:-python3}"' in script.read_text()
    assert commands[1] == ".venv/bin/python -m pip install -r requirements-dev.txt"
    assert all(command.startswith(".venv/bin/python") for command in commands[1:]), commands
    assert any(command.startswith(".venv/bin/python -m papermill anime_gan.ipynb") for command in commands)
    assert "-p QUICK True" in script.read_text()


def test_ci_runs_the_readme_commands():
    """.ci/run makes and fills .venv as setup_and_run.sh does (without the QUICK run), then runs exactly the
    README's test command."""
    _, tests = readme_commands()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    ci = [line for line in ci if line.startswith(("python3", ".venv/"))]
    setup = script_commands(ROOT / "setup_and_run.sh")
    assert ci == ["python3 -m venv .venv", setup[1], tests]


@pytest.fixture
def ci_copy(tmp_path):
    """.ci/run in an empty project folder (no ../shared beside it), and a `python3` that only logs its
    arguments (and fails), first on PATH: whatever runs, nothing is installed."""
    project = tmp_path / "project"
    (project / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", project / ".ci" / "run")
    bin_dir, log = tmp_path / "bin", tmp_path / "python3.log"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 3\n')
    (bin_dir / "python3").chmod(0o755)

    def run(ci, shared=False):
        if shared:
            (tmp_path / "shared" / "data" / "anime-faces" / "images").mkdir(parents=True)
            weights = tmp_path / "shared" / "models" / "fid-inception"
            weights.mkdir(parents=True)
            (weights / "weights-inception-2015-12-05-fidhelper-converted.pth").write_bytes(b"weights")
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CI": ci}
        result = subprocess.run(
            ["bash", str(project / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
        )
        return result, log.read_text() if log.exists() else ""

    return run


@pytest.mark.parametrize("ci", ["true", "1", "True"])
def test_ci_without_shared_fails_before_installing_anything(ci_copy, ci):
    result, calls = ci_copy(ci)
    assert result.returncode == 1 and "../shared" in result.stderr and "missing" in result.stderr
    assert calls == ""  # python3 was never called: no venv, no pip


def test_ci_with_shared_and_local_runs_without_it_go_on_to_install(ci_copy):
    """The positive control: with ../shared present CI goes on to make the venv (the logging python3 then
    stops it), and off CI a missing ../shared does not stop the script (those tests skip)."""
    result, calls = ci_copy("false")
    assert result.returncode == 3 and calls == "-m venv .venv\n"
    result, calls = ci_copy("true", shared=True)
    assert result.returncode == 3 and calls == "-m venv .venv\n-m venv .venv\n"


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", "fail"), ("1", "fail"), ("", "skip"), ("false", "skip")]
)
def test_tests_that_need_shared_fail_on_ci_and_skip_elsewhere(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(
        (pytest.fail.Exception, pytest.skip.Exception)
    ) as raised:  # either, to tell them apart
        needs_shared(tmp_path / "not_here")
    assert raised.type is {"fail": pytest.fail.Exception, "skip": pytest.skip.Exception}[outcome]
    assert "is absent" in str(raised.value)
    needs_shared(tmp_path)  # present: nothing happens


def documented_papermill_lines():
    """Every line of the README, samples/RESULTS.md and the notebook's markdown that runs the notebook."""
    texts = [(ROOT / name).read_text(encoding="utf-8") for name in ("README.md", "samples/RESULTS.md")]
    texts += ["".join(c["source"]) for c in notebook_json()["cells"] if c["cell_type"] == "markdown"]
    return [line for text in texts for line in text.splitlines() if "papermill anime_gan.ipynb " in line]


def test_documented_commands_create_the_folder_papermill_writes_into():
    """papermill saves the executed notebook before the first cell runs and refuses a missing folder, and a
    fresh clone has no runs/: every documented command must create its output folder first."""
    lines = documented_papermill_lines()
    assert len(lines) >= 3, lines  # the README's line for Windows, RESULTS.md's two
    for line in lines:
        before, output = re.search(r"^(.*)papermill anime_gan\.ipynb (\S+)", line).groups()
        folder = output.rpartition("/")[0]
        assert folder in ("", ".") or f"mkdir -p {folder} " in before, line


# ---------------------------------------------------------------------------------------------------------
# The test tools, the tests' kernel, and the tests in two processes


def pinned_tools():
    """{name: version} of requirements-dev.txt's own lines (not the -r of requirements.txt)."""
    lines = (ROOT / "requirements-dev.txt").read_text().splitlines()
    requirements = [line.split("#")[0].strip() for line in lines]
    requirements = [line for line in requirements if line and not line.startswith("-r")]
    pins = dict(line.split("==") for line in requirements if "==" in line)
    assert len(pins) == len(requirements), requirements  # every test tool pinned exactly
    return pins


def test_the_test_tools_are_pinned_and_these_are_the_ones_running():
    """A new release of ruff, pytest, pytest-xdist, papermill, ipykernel or huggingface_hub (whose upload the
    sharing tests replace) cannot fail CI with no change here; and the suite that just ran used those versions."""
    pins = pinned_tools()
    assert set(pins) == {"papermill", "ipykernel", "pytest", "pytest-xdist", "ruff", "huggingface_hub"}
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, name


def test_every_kernel_is_this_interpreter_without_ipywidgets():
    """The tests' papermill runs start "python3": inside kernel_environment() that is sys.executable, whatever
    kernelspecs the machine has registered, and ipywidgets cannot be imported by it (so the notebook
    reports headless whether or not ipywidgets is installed)."""
    from jupyter_client.kernelspec import KernelSpecManager

    with kernel_environment():
        spec = KernelSpecManager().get_kernel_spec("python3")
        probe = subprocess.run(
            [sys.executable, "-c", "import ipywidgets"], capture_output=True, text=True, env=dict(os.environ)
        )
    assert spec.argv[0] == sys.executable and Path(spec.argv[0]).exists()
    assert probe.returncode == 1 and "hidden from the tests' kernel" in probe.stderr
    assert "JUPYTER_PATH" not in os.environ or "anime_gan_kernel_" not in os.environ["JUPYTER_PATH"]


# Shared fixtures cheap enough to be made once in each process (a second or two each).
CHEAP_SHARED = {"nb", "default_parameters", "tiny_images", "test_device", "tmp_path_factory"}


def test_each_slow_group_is_a_fixture_and_the_slow_groups_come_first(request):
    """conftest.SLOW_SHARED_WORK keeps each slow fixture's tests in one process (pytest -n 2): a renamed
    fixture would drop out of the list without a word, and a run shared by several files would then be made
    once in each process. Every name is a fixture of the suite; every test is in a group; the slow groups
    collected come first, in their listed order."""
    sources = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").glob("*.py"))
    for name in SLOW_SHARED_WORK:
        assert re.search(rf"@pytest\.fixture\(.*\)\ndef {name}\(", sources), name
    groups = [group_of(item) for item in request.session.items]
    firsts = [group for index, group in enumerate(groups) if group not in groups[:index]]
    slow = [group for group in firsts if group in SLOW_SHARED_WORK]
    assert firsts[: len(slow)] == slow == [name for name in SLOW_SHARED_WORK if name in slow]
    for item in request.session.items:
        assert [mark.args for mark in item.iter_markers("xdist_group")] == [(group_of(item),)], item.nodeid


def test_no_shared_fixture_is_made_in_two_processes(request):
    """Each session- or module-scoped fixture (but the cheap ones) is read by the tests of one group only, so
    pytest -n 2 makes it once: a new slow fixture that two groups read must join SLOW_SHARED_WORK."""
    groups_reading = {}  # (fixture, where it is defined): the groups whose tests read it
    for item in request.session.items:
        for name, definitions in item._fixtureinfo.name2fixturedefs.items():
            fixture = definitions[-1]  # the one this test gets
            if fixture.scope in ("session", "module") and name not in CHEAP_SHARED:
                groups_reading.setdefault((name, fixture.baseid), set()).add(group_of(item))
    assert {name: groups for name, groups in groups_reading.items() if len(groups) > 1} == {}


def test_with_n_and_no_dist_the_groups_decide_and_plain_pytest_is_left_alone():
    """conftest's xdist wiring: -n alone means loadgroup in conftest's order, in the controller and in each
    process it starts; an explicit --dist, and a run without -n, are left as they are."""

    def config(numprocesses, dist, **extra):
        plugins = types.SimpleNamespace(hasplugin=lambda name: name == "xdist")
        option = types.SimpleNamespace(numprocesses=numprocesses, dist=dist, loadscopereorder=True)
        return types.SimpleNamespace(pluginmanager=plugins, option=option, **extra)

    for numprocesses, dist, expected in [(2, "no", ("loadgroup", False)), (2, "load", ("load", True))]:
        chosen = config(numprocesses, dist)
        conftest.pytest_cmdline_main(chosen)
        assert (chosen.option.dist, chosen.option.loadscopereorder) == expected
    plain = config(None, "no")
    conftest.pytest_cmdline_main(plain)
    assert (plain.option.dist, plain.option.loadscopereorder) == ("no", True)
    for dist, grouped in [("loadgroup", True), ("load", False)]:
        node = types.SimpleNamespace(config=config(2, dist), workerinput={})
        conftest.pytest_configure_node(node)
        process = config(None, "no", workerinput=node.workerinput)
        process.option.loadgroup = False  # what xdist's process reads from its own command line
        conftest.pytest_configure(process)
        assert process.option.loadgroup is grouped

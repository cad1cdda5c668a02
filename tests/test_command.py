"""The one `diffusion-studio` command: shared help, dispatch, and the missing-extra message."""
import subprocess
import sys

import pytest

from desktop import cli


def test_help_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for sub in cli.SUBCOMMANDS:
        assert sub.name in out
    assert "needs the 'engine' extra" in out


def test_unknown_subcommand_is_exit_2(capsys):
    assert cli.main(["paint-me-a-cat"]) == 2
    assert "unknown subcommand 'paint-me-a-cat'" in capsys.readouterr().err


def test_a_program_run_takes_its_thread_policy_from_the_environment(monkeypatch):
    from desktop.runtime import providers

    monkeypatch.setattr(providers, "_pool", {"shared": False, "spinning": True, "stop_after_run": False, "ready": None})
    providers.configure_program_threads({"DIFFUSION_STUDIO_THREADS": " Spin "})
    assert providers._pool == {"shared": True, "spinning": True, "stop_after_run": False, "ready": None}
    for unset in ({}, {"DIFFUSION_STUDIO_THREADS": ""}, {"DIFFUSION_STUDIO_THREADS": "  "}):  # `VAR= cmd` is unset
        providers.configure_program_threads(unset)
        assert providers._pool == {"shared": False, "spinning": True, "stop_after_run": True,
                                   "ready": None}  # burst: the default
    options = providers.session_options()  # spinning within a run, stopped when it ends
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        options.get_session_config_entry("session.intra_op.allow_spinning")
    providers.configure_program_threads({"DIFFUSION_STUDIO_THREADS": "sleep"})
    options = providers.session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        options.get_session_config_entry("session.force_spinning_stop")


def test_an_unknown_thread_policy_is_one_sentence_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["diffusion-studio", "info", "--help"])  # a program run (argv None)
    monkeypatch.setenv("DIFFUSION_STUDIO_THREADS", "fast please")
    assert cli.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["DIFFUSION_STUDIO_THREADS='fast please' is not a thread policy: use one of burst, sleep, spin"]


@pytest.mark.slow  # PyTorch: imports every command's module, the engine's too
def test_every_subcommand_target_resolves():
    for sub in cli.SUBCOMMANDS:
        assert callable(cli.resolve(sub)), sub.target


@pytest.mark.parametrize("name", ["train", "export", "make-dataset"])
def test_missing_engine_extra_is_one_line_not_a_traceback(name, monkeypatch, capsys):
    def fake_resolve(sub):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(cli, "resolve", fake_resolve)
    assert cli.main([name, "--help"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'diffusion-studio[engine]'" in err[0] and name in err[0]


def test_a_missing_module_of_our_own_still_raises(monkeypatch):
    """Only missing optional packages become the one-line message; our own bugs stay loud."""
    def fake_resolve(sub):
        raise ModuleNotFoundError("No module named 'engine.nope'", name="engine.nope")

    monkeypatch.setattr(cli, "resolve", fake_resolve)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["train"])


@pytest.mark.slow
def test_subcommand_help_through_the_installed_entry_point():
    out = subprocess.run([sys.executable, "-m", "desktop", "generate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "diffusion-studio generate" in out.stdout and "--model" in out.stdout

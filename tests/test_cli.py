import subprocess
import sys

from leanstar import cli


def _run(*args):
    return subprocess.run([sys.executable, "-m", "leanstar", *args], capture_output=True, text=True)


def test_help_lists_every_stage():
    out = _run("--help")
    assert out.returncode == 0
    for stage in (
        "thoughts",
        "sft",
        "search",
        "iterate",
        "eval",
        "traces",
        "lean",
        "sparse",
        "quickstart",
    ):
        assert stage in out.stdout


def test_help_does_not_import_heavy_packages():
    code = (
        "import sys; from leanstar.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("[]"), out.stdout


def test_every_command_has_help():
    for name, entry in cli.COMMANDS.items():
        subs = [[name]] if isinstance(entry, cli.Command) else [[name, s] for s in entry]
        for words in subs:
            out = _run(*words, "--help")
            assert out.returncode == 0, (words, out.stderr)
            assert "--config" in out.stdout, words


def test_config_errors_exit_2_with_the_key(tmp_path):
    out = _run("model", "tiny", str(tmp_path / "m"), "--seed", "x")
    assert out.returncode == 2
    assert "'seed' must be an integer" in out.stderr
    out = _run("model", "tiny", "--sed", "1")
    assert out.returncode == 2
    assert "unrecognized arguments: --sed" in out.stderr


def test_model_tiny_command(tmp_path):
    out = _run("model", "tiny", str(tmp_path / "m"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m" / "config.json").is_file()

"""``wkvbench env`` and the env.json record, on a machine without a GPU."""

import json
import subprocess
import types
from pathlib import Path

import pytest
import torch

from wkvbench import cli, envinfo
from wkvbench.harness import nvml

ROOT = Path(__file__).resolve().parents[1]
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the record of a machine without a GPU")


def test_record_has_the_documented_keys_and_is_json():
    env = envinfo.collect_env(argv=["wkvbench", "env"], suite={"name": "x"})
    for key in ("schema_version", "timestamp", "hostname", "python", "cpu", "gpu", "packages", "torch", "git",
                "argv", "suite", "copy_bandwidth_gbs", "interpret"):  # fmt: skip
        assert key in env, key
    assert json.loads(json.dumps(env)) == env
    assert env["argv"] == ["wkvbench", "env"] and env["suite"] == {"name": "x"}
    assert env["packages"]["torch"] in (torch.__version__, torch.__version__.split("+")[0])
    assert env["cpu"]["logical_cores"] >= 1 and env["cpu"]["model"]


@no_gpu
def test_without_gpu_the_record_is_a_valid_cpu_record():
    env = envinfo.collect_env()
    assert env["gpu"] is None and env["torch"]["cuda"] is None
    assert envinfo.gpu_snapshot() is None


def test_git_commit_matches_git():
    want = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    info = envinfo.git_info()
    if want.returncode != 0:
        assert info == {"commit": None, "dirty": None}
    else:
        assert info["commit"] == want.stdout.strip() and isinstance(info["dirty"], bool)


def test_git_outside_a_checkout(tmp_path):
    assert envinfo.git_info(tmp_path) == {"commit": None, "dirty": None}


def test_an_installed_copy_inside_another_repository_has_no_commit(tmp_path):
    other = tmp_path / "other-project"
    site = other / "venv" / "site-packages"
    site.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "-C", str(other), *ident, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    (site / "wkvbench").mkdir()
    (site / "wkvbench" / "envinfo.py").write_text((ROOT / "wkvbench" / "envinfo.py").read_text())
    fake = types.ModuleType("wkvbench_copy_envinfo")
    fake.__file__ = str(site / "wkvbench" / "envinfo.py")
    code = compile((site / "wkvbench" / "envinfo.py").read_text(), fake.__file__, "exec")
    exec(code, fake.__dict__)  # the real module, but living where an install would put it
    assert fake.git_info() == {"commit": None, "dirty": None}


def test_throttle_reason_names():
    assert nvml.throttle_reasons(0) == []
    assert nvml.throttle_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert nvml.throttle_reasons(0x1 | 0x10000) == ["gpu_idle", "0x10000"]
    assert nvml.throttle_reasons(None) is None


def test_env_subcommand_prints_json(capsys):
    assert cli.main(["env"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["python"] and "gpu" in env

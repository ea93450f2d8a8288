"""Every checked-in config binds: params.yaml, each profile overlay, and dvc.yaml's stages and params."""

import importlib
import shlex
from pathlib import Path

import pytest
import yaml

from stages.config import ParamsError
from stages.params import PROFILE_DIR, SECTIONS, apply_profile, bind_all, profile_params

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_params_yaml_binds_every_section_and_is_the_tiny_profile():
    data = yaml.safe_load(PARAMS.read_text())
    assert set(data) == set(SECTIONS), "every section has a dataclass and every dataclass a section"
    assert bind_all(data, "params.yaml")["base"].profile == "tiny"
    assert data == profile_params("tiny"), "params.yaml drifted from configs/profiles/tiny.yaml: run `ttt profile tiny`"


@pytest.mark.parametrize("profile", sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
def test_every_profile_binds(profile, tmp_path):
    bound = apply_profile(profile, tmp_path / "params.yaml")
    assert bound["base"].profile == profile
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == profile_params(profile)


def test_unknown_profile_and_section():
    with pytest.raises(ParamsError, match="unknown profile"):
        profile_params("huge")
    with pytest.raises(ParamsError, match=r"unknown section\(s\) \['trian'\]"):
        bind_all({"trian": {}}, "x")


@pytest.mark.parametrize("name", sorted(DVC))
def test_dvc_stage_binds_to_its_flow_and_params(name):
    stage = DVC[name]
    argv = shlex.split(stage["cmd"])
    assert argv[:3] == ["python", "-m", f"flows.{name}"], "each stage runs its own flow module"
    module = importlib.import_module(f"flows.{name}")
    assert callable(module.main)
    # every path the command names is passed explicitly, and every declared dep/out appears on the command line
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
    for path in outs:
        assert path in argv, f"{name}: output {path} is not passed on the command line"
    data_deps = [d for d in stage.get("deps", []) if d.startswith(("data/", "models/", "data_contracts"))]
    for path in data_deps:
        assert path in argv, f"{name}: input {path} is not passed on the command line"
    data = yaml.safe_load(PARAMS.read_text())
    for key in stage.get("params", []):
        section, _, field = key.partition(".")
        assert section in data, f"{name}: params section {section} missing from params.yaml"
        if field:
            assert field in data[section], f"{name}: params key {key} missing from params.yaml"


def test_dvc_deps_exist():
    for name, stage in DVC.items():
        for dep in stage.get("deps", []):
            if not dep.startswith(("data/", "models/")):
                assert (ROOT / dep).exists(), f"{name}: dependency {dep} does not exist"

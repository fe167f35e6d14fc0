"""Config validation: defaults filled, bad values named with key, value and what is allowed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from braggflow.config import load_config, validate_config
from braggflow.errors import ConfigError, InputError


def test_empty_config_gets_every_default():
    config = validate_config({})
    assert config["experiment"] == "demo"
    assert config["simulate"]["cell"]["lattice_type"] == "tetragonal"
    assert config["data_engine"]["runs"] == ["r0000", "r0001"]


def test_bad_value_names_key_value_and_allowed():
    with pytest.raises(ConfigError) as err:
        validate_config({"simulate": {"blank_fraction": 1.5}})
    msg = str(err.value)
    assert "simulate.blank_fraction" in msg and "1.5" in msg and "<= 1" in msg
    assert "\n" not in msg


def test_bad_enum_lists_choices():
    with pytest.raises(
        ConfigError,
        match=r"source.kind: bad value \"hdf9\"; allowed: one of \"simulate\", \"files\"",
    ):
        validate_config({"source": {"kind": "hdf9"}})


def test_unknown_key_is_refused_with_allowed_keys():
    with pytest.raises(ConfigError, match="'frames_per_runn' was unexpected.*frames_per_run"):
        validate_config({"simulate": {"frames_per_runn": 3}})


def test_missing_config_file_is_one_line(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml_names_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nsimulate: [unclosed\n")
    with pytest.raises(InputError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(bad)


def test_every_shipped_config_validates(repo):
    files = [
        repo / "config" / "config.yaml",
        *sorted((repo / "config" / "experiments").glob("*.yaml")),
    ]
    assert len(files) >= 3
    for path in files:
        assert load_config(path)["experiment"]


def test_cli_reports_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulate:\n  frames_per_run: -4\n")
    out = subprocess.run(
        [sys.executable, "-m", "braggflow", "validate-config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "simulate.frames_per_run" in lines[0] and "-4" in lines[0]


def test_student_steps_must_name_a_configured_student():
    config = validate_config({"distill": {"student_steps": {"student_atto_b2": 900}}})
    assert config["distill"]["student_steps"] == {"student_atto_b2": 900}
    with pytest.warns(UserWarning, match=r"no student named 'student_atoo_b2'.*ignored"):
        validate_config({"distill": {"student_steps": {"student_atoo_b2": 900}}})
    with pytest.raises(ConfigError, match="student_steps"):
        validate_config({"distill": {"student_steps": {"student_atto_b2": 0}}})


def test_a_students_section_holds_only_that_student():
    from braggflow.config import student_section

    distill = validate_config({"distill": {"student_steps": {"student_atto_b2": 900}}})["distill"]
    atto = json.loads(student_section(distill, "student_atto_b2"))
    tiny = json.loads(student_section(distill, "student_tiny_b4"))
    assert [s["name"] for s in atto["students"]] == ["student_atto_b2"]
    assert atto["student_steps"] == {"student_atto_b2": 900}
    assert tiny["student_steps"] == {} and [s["name"] for s in tiny["students"]] == [
        "student_tiny_b4"
    ]
    # the atto's schedule is not part of the tiny student's parameters: it does not rerun
    longer = validate_config({"distill": {"student_steps": {"student_atto_b2": 1200}}})["distill"]
    assert student_section(longer, "student_tiny_b4") == student_section(distill, "student_tiny_b4")
    assert student_section(longer, "student_atto_b2") != student_section(distill, "student_atto_b2")

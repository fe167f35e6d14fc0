"""Load and validate experiment configs against ``workflow/schemas/config.schema.yaml``.

Validation fills defaults (so every stage sees every key) and turns the first violation into one
line that names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from braggflow.errors import ConfigError, InputError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _validator_with_defaults(schema: dict[str, Any]):
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema_)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def _describe(error) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    schema = error.schema
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {})))
        return f"config key {key}: {error.message}; allowed keys: {allowed}"
    if error.validator == "required":
        return f"config key {key}: {error.message}"
    allowed = _allowed_text(schema)
    value = json.dumps(error.instance, default=str)
    return f"config key {key}: bad value {value}; allowed: {allowed}"


def _allowed_text(schema: Mapping[str, Any]) -> str:
    parts = []
    if "enum" in schema:
        parts.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    if "type" in schema:
        parts.append(f"type {schema['type']}")
    for key, word in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in schema:
            parts.append(f"{word} {schema[key]}")
    if "minItems" in schema:
        parts.append(f"at least {schema['minItems']} items")
    if "pattern" in schema:
        parts.append(f"matching {schema['pattern']}")
    if "description" in schema:
        parts.append(f"({schema['description']})")
    return ", ".join(parts) or "see config/README.md"


def validate_config(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``config`` in place, filling defaults; raise :class:`ConfigError` on the first error."""
    validator = _validator_with_defaults(schema or load_schema())
    errors = sorted(
        validator.iter_errors(config),
        key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))),
    )
    if errors:
        raise ConfigError(_describe(errors[0]))
    _check_student_steps(config)
    return config


def _check_student_steps(config: Mapping[str, Any]) -> None:
    """Warn when ``distill.student_steps`` names no configured student (a typo, or a student an
    experiment config left out: config files merge, so the demo's entry may outlive its student)."""
    distill = config.get("distill") or {}
    names = [str(s.get("name")) for s in distill.get("students") or []]
    unknown = sorted(set(distill.get("student_steps") or {}) - set(names))
    if unknown:
        warnings.warn(
            f"distill.student_steps: no student named {', '.join(map(repr, unknown))} "
            f"(configured: {', '.join(names) or 'none'}); that entry is ignored",
            stacklevel=3,
        )


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file, merge ``overrides`` (nested), validate and fill defaults."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            path, "config file not found", "pass an existing YAML file, e.g. config/config.yaml"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise InputError(where, "not valid YAML", "fix the syntax at that line") from None
    if not isinstance(data, dict):
        raise InputError(path, "top level is not a mapping", "write 'key: value' lines")
    if overrides:
        deep_update(data, overrides)
    return validate_config(data)


def deep_update(target: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def stage_params(params_json: str | None, config_file: str | None, section: str) -> dict[str, Any]:
    """The config section a CLI command runs with.

    Rules pass ``--params '<json>'`` (the validated section, so Snakemake reruns a stage when it
    changes); standalone users pass ``--config FILE`` and get the section with defaults filled.
    """
    if params_json:
        return json.loads(params_json)
    if config_file:
        return load_config(config_file)[section]
    return validate_config({})[section]


def results_root(config: Mapping[str, Any]) -> Path:
    return Path(config["results_dir"]) / config["experiment"]


def student_section(distill: Mapping[str, Any], student: str) -> str:
    """The ``distill`` section as one student's job sees it (JSON): only that student's entry in
    ``students`` and ``student_steps``, so editing one student reruns only that student."""
    cfg = dict(distill)
    cfg["students"] = [s for s in distill.get("students") or [] if s.get("name") == student]
    steps = distill.get("student_steps") or {}
    cfg["student_steps"] = {student: steps[student]} if student in steps else {}
    return json.dumps(cfg, sort_keys=True)

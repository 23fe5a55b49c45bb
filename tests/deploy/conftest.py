"""Fixtures for the deploy and plan tests: a fake export, the manifests' validators, a kubectl stand-in.

No Kubernetes cluster exists on these machines, so manifests are checked offline: core kinds with
`kubernetes-validate --strict` against its bundled schemas at the pinned Kubernetes version, the
InferenceService with `jsonschema` against KServe's own CRD schema (vendored in tests/data/kserve).
`--apply` runs tests/standins/kubectl, a stand-in that records its argv and runs the same checks.
"""
from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve.deploy.spec import KUBERNETES_VERSION

TESTS = Path(__file__).resolve().parents[1]
STANDINS = TESTS / "standins"
KSERVE_SCHEMA = TESTS / "data" / "kserve" / "inferenceservice-v1beta1.schema.json.gz"
MODEL = "digits_model"


@pytest.fixture
def exported(mlserve_home: Path) -> Path:
    """Versions 1 and 2 of digits_model in the workspace, laid out as `mlserve export` writes them.

    The files are stand-ins for SavedModels (nothing here loads them): deploy only copies versions.
    """
    base = mlserve_home / "models" / MODEL
    for version in (1, 2):
        folder = base / str(version)
        (folder / "variables").mkdir(parents=True)
        (folder / "assets.extra").mkdir()
        (folder / "saved_model.pb").write_bytes(f"saved model {version}".encode())
        (folder / "variables" / "variables.index").write_bytes(b"index")
        (folder / "assets.extra" / "mlserve.json").write_text(json.dumps({"version": version}))
    return base


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def validate_core(path: Path) -> str:
    """kubernetes-validate --strict at the pinned version (raises on any error)."""
    import kubernetes_validate

    return kubernetes_validate.validate(load_yaml(path), KUBERNETES_VERSION, strict=True)


def _no_unknown_fields(schema: Any) -> Any:
    """The schema with unknown fields rejected where it lists the fields (the API server's strict
    field validation); subtrees marked x-kubernetes-preserve-unknown-fields stay open."""
    if isinstance(schema, dict):
        schema = {k: _no_unknown_fields(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_no_unknown_fields(v) for v in schema]
    return schema


def kserve_errors(doc: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = json.loads(gzip.open(KSERVE_SCHEMA).read())
    validator = jsonschema.Draft7Validator(_no_unknown_fields(schema))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture
def kubectl_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH starts with tests/standins (the kubectl stand-in; there is no cluster here), then this
    venv's bin (the stand-in's python3 needs kubernetes-validate). Returns its argv log."""
    log = tmp_path / "standin.log"
    monkeypatch.setenv("PATH", os.pathsep.join([str(STANDINS), str(Path(sys.executable).parent),
                                                os.environ.get("PATH", "")]))
    monkeypatch.setenv("MLSERVE_STANDIN_LOG", str(log))
    monkeypatch.setenv("MLSERVE_STANDIN_STATE", str(tmp_path / "standin-state"))
    return log


def kubectl_calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [entry["argv"] for entry in map(json.loads, log.read_text().splitlines())
            if entry["tool"] == "kubectl"]

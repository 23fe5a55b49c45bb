"""The Dockerfile that bakes exported versions into an image, and its build context.

The output folder is the build context: `model/<name>/<version>/` holds copies of the versions and
each is copied to `/models/<name>/<version>/`, where the server serves them from
(`--model_base_path=/models/$MODEL_NAME`). The image is one of two:

- FROM the pinned `tensorflow/serving` (the default): its entrypoint passes --port, --rest_api_port,
  --model_name=$MODEL_NAME and --model_base_path=/models/$MODEL_NAME, the Deployment the rest.
- mlserve's own server, when a flag only it has is asked for (--feature-store, --prediction-cache;
  --image then only names it): `python:<X.Y.Z>-slim` (the Python running this) with mlserve installed.
  mlserve's source goes into the context (`mlserve-src/`) and a first build stage makes the wheel
  (`pip wheel --no-deps`: the build requirements come from PyPI inside the build, not from this
  machine); the second installs that wheel with its `redis` extra, its dependencies held to the
  versions installed here (`constraints.txt`), and `mlserve-entrypoint.sh` starts
  `mlserve-model-server` with the same flags tensorflow/serving's entrypoint passes, so the
  Deployment's container args are the same for both images.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from mlserve.deploy.spec import GRPC_PORT, MODELS_ROOT, REST_PORT, DeploySpec
from mlserve.errors import UsageError

CONTEXT_DIR = "model"
SOURCE_DIR = "mlserve-src"  # mlserve's source in the build context (mlserve image)
ENTRYPOINT_FILE = "mlserve-entrypoint.sh"
CONSTRAINTS_FILE = "constraints.txt"
ENTRYPOINT_PATH = f"/usr/bin/{ENTRYPOINT_FILE}"
SOURCE_FILES = ("pyproject.toml", "README.md")  # what setuptools reads beside the package


def default_image(spec: DeploySpec) -> str:
    """The baked image's reference when --image is not given: <name>:v<latest version>, whichever
    server it runs (the image is the model's: a new version is a new tag)."""
    return f"{spec.name}:v{spec.versions[-1]}"


def python_image() -> str:
    """The mlserve image's base: the Python version running this (the one tested here), pinned."""
    v = sys.version_info
    return f"python:{v.major}.{v.minor}.{v.micro}-slim"


def base_description(spec: DeploySpec) -> str:
    """What the Deployment's image runs, in words: for reports."""
    if spec.mlserve_image:
        return f"mlserve {project(source_root())['version']} on {python_image()}"
    return spec.serving_image


def dockerfile(spec: DeploySpec) -> str:
    """The Dockerfile's text: FROM tensorflow/serving, or mlserve's server (spec.mlserve_image)."""
    if spec.mlserve_image:
        return _mlserve_dockerfile(spec)
    lines = [
        f"# Written by `mlserve deploy kubernetes`: TF Serving {spec.tag} with {spec.model_name} "
        f"version(s) {', '.join(map(str, spec.versions))} baked in.",
        f"# Build and push: docker build -t {spec.image} . && docker push {spec.image}",
        f"FROM {spec.serving_image}",
        f"ENV MODEL_NAME={spec.model_name}",
    ]
    lines += _copies(spec)
    return "\n".join(lines) + "\n"


def _copies(spec: DeploySpec) -> list[str]:
    return [f"COPY {CONTEXT_DIR}/{spec.model_name}/{v} {MODELS_ROOT}/{spec.model_name}/{v}/" for v in spec.versions]


def _mlserve_dockerfile(spec: DeploySpec) -> str:
    meta = project(source_root())
    wheel = wheel_name(meta["name"], meta["version"])
    base = python_image()
    return "\n".join([
        f"# Written by `mlserve deploy kubernetes`: mlserve {meta['version']}'s model server "
        f"(mlserve-model-server) on {base}, with {spec.model_name} version(s) "
        f"{', '.join(map(str, spec.versions))} baked in.",
        f"# It needs mlserve's server for {spec.mlserve_flags}; {ENTRYPOINT_FILE} passes the flags "
        "tensorflow/serving's entrypoint passes, so the Deployment's args are the same.",
        f"# Build and push: docker build -t {spec.image} . && docker push {spec.image}",
        f"FROM {base} AS wheel",
        f"COPY {SOURCE_DIR} /src",
        "RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src",
        "",
        f"FROM {base}",
        f"COPY --from=wheel /wheels/{wheel} /tmp/wheels/",
        f"COPY {CONSTRAINTS_FILE} /tmp/{CONSTRAINTS_FILE}",
        f'RUN pip install --no-cache-dir --constraint /tmp/{CONSTRAINTS_FILE} "/tmp/wheels/{wheel}[redis]" '
        f"&& rm -rf /tmp/wheels /tmp/{CONSTRAINTS_FILE}",
        f"COPY {ENTRYPOINT_FILE} {ENTRYPOINT_PATH}",
        f"ENV MODEL_NAME={spec.model_name} MODEL_BASE_PATH={MODELS_ROOT}",
        *_copies(spec),
        f"EXPOSE {GRPC_PORT} {REST_PORT}",
        f'ENTRYPOINT ["/bin/sh", "{ENTRYPOINT_PATH}"]',
    ]) + "\n"


def entrypoint_script() -> str:
    """tensorflow/serving's entrypoint (tf_serving_entrypoint.sh) for mlserve's server; --host
    because mlserve's server binds 127.0.0.1 unless told otherwise."""
    return (
        "#!/bin/sh\n"
        "# Written by `mlserve deploy kubernetes`: what tensorflow/serving's entrypoint passes, for mlserve's server.\n"
        f"exec mlserve-model-server --port={GRPC_PORT} --rest_api_port={REST_PORT} --host=0.0.0.0 \\\n"
        '    --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"\n'
    )


def source_root() -> Path:
    """The folder holding mlserve's pyproject.toml and package: the image is built from it."""
    import mlserve

    root = Path(mlserve.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or project(root).get("name") != "mlserve":
        raise UsageError(f"mlserve's server image is built from mlserve's source, and {root} has none "
                         "(mlserve is installed from a wheel)",
                         hint="give --image IMAGE: an image with mlserve installed whose entrypoint runs "
                              "mlserve-model-server (docs/deploy.md), or run from a source checkout")
    return root


def project(root: Path) -> dict:
    """The [project] table of mlserve's pyproject.toml."""
    import tomllib

    return tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})


def wheel_name(name: str, version: str) -> str:
    """The file name `pip wheel` gives a pure-Python project (PEP 427, names normalised)."""
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-py3-none-any.whl"


def constraints(root: Path) -> str:
    """`name==version` of each dependency (and the redis extra) installed here, so the image runs
    the versions mlserve was tested with; one not installed here is left to pip."""
    from importlib import metadata

    meta = project(root)
    wanted = [*meta.get("dependencies", []), *meta.get("optional-dependencies", {}).get("redis", [])]
    lines = [f"# The versions installed where `mlserve deploy` ran (Python {sys.version.split()[0]})."]
    for requirement in wanted:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


def context_files(spec: DeploySpec) -> dict[str, Path]:
    """Build-context path -> the folder copied there: the exported versions, and for the mlserve
    image mlserve's package."""
    trees = {f"{CONTEXT_DIR}/{spec.model_name}/{v}": Path(spec.base_path) / str(v) for v in spec.versions}
    if spec.mlserve_image:
        trees[f"{SOURCE_DIR}/mlserve"] = source_root() / "mlserve"
    return trees


def context_texts(spec: DeploySpec) -> dict[str, str]:
    """Build-context path -> text: the Dockerfile, and for the mlserve image its other files."""
    texts = {"Dockerfile": dockerfile(spec)}
    if spec.mlserve_image:
        root = source_root()
        texts[ENTRYPOINT_FILE] = entrypoint_script()
        texts[CONSTRAINTS_FILE] = constraints(root)
        for name in SOURCE_FILES:
            texts[f"{SOURCE_DIR}/{name}"] = (root / name).read_text()
    return texts

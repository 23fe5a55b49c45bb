"""TF Serving in Docker: the `tensorflow/serving` image (CPU) or its `-gpu` tag with `--gpus all`.

The container runs attached (`docker run --rm`, no `-d`): the `docker run` client is mlserve's child,
its output (the container's log) goes to the log file, and the same lifecycle as the other
runtimes applies. Stop is `docker stop` (bounded) then `docker rm -f`. The image's entrypoint starts
`tensorflow_model_server --port=8500 --rest_api_port=8501 --model_name=$MODEL_NAME
--model_base_path=/models/$MODEL_NAME` and passes any further arguments on as flags.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from mlserve import settings
from mlserve.errors import UnavailableError
from mlserve.runtimes import process
from mlserve.runtimes.base import Launch, Notify, Runtime, ServeOptions, tfs_flags
from mlserve.runtimes.modelconfig import with_base_paths
from mlserve.runtimes.records import ServerRecord
from mlserve.workspace import Workspace

GRPC_IN_CONTAINER = 8500
REST_IN_CONTAINER = 8501
CONFIG_DIR = "/etc/mlserve"  # where config/batching/monitoring files appear in the container


def container_name(name: str) -> str:
    return f"mlserve-{name}"


def image_ref(gpu: bool) -> str:
    """`<docker_image>:<docker_tag>`, with the `-gpu` variant of the tag for GPU serving."""
    tag = str(settings.get("docker_tag"))
    return f"{settings.get('docker_image')}:{tag}-gpu" if gpu else f"{settings.get('docker_image')}:{tag}"


def docker_client() -> str | None:
    return shutil.which("docker")


def engine_check(timeout: float = 5.0) -> tuple[bool, str]:
    """Does a Docker engine answer? (`docker info`, bounded; the client alone is not enough)."""
    client = docker_client()
    if client is None:
        return False, "the docker client is not on PATH"
    try:
        done = subprocess.run([client, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"`docker info` did not answer within {timeout:g}s"
    except OSError as e:
        return False, f"`docker info` failed: {e}"
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        return False, "no Docker engine answers (`docker info`: " + (why[-1] if why else "failed") + ")"
    return True, f"Docker engine {done.stdout.strip() or '(version unknown)'} answers"


def _mount(source: str | Path, target: str) -> list[str]:
    return ["--mount", f"type=bind,source={source},target={target},readonly"]


class DockerRuntime(Runtime):
    name = "docker"

    def available(self) -> tuple[bool, str]:
        return engine_check()

    def launch(self, options: ServeOptions, workspace: Workspace) -> Launch:
        container = container_name(options.name)
        argv = ["docker", "run", "--rm", "--name", container]
        if options.gpu:
            argv += ["--gpus", "all"]
        argv += ["-p", f"{options.host}:{options.grpc_port}:{GRPC_IN_CONTAINER}",
                 "-p", f"{options.host}:{options.rest_port}:{REST_IN_CONTAINER}"]
        files: dict[Path, str] = {}
        mapped: dict[Path, str] = {}  # host file -> its path in the container
        if options.model_config_file is not None:
            # The config file names host paths: mount each model and hand the server a copy of
            # the file that names the container paths instead.
            inside = {m: f"/models/{m}" for m in options.config_models}
            for model, base in options.config_models.items():
                argv += _mount(base, inside[model])
            rewritten = workspace.servers_dir / f"{options.name}.models.docker.config"
            files[rewritten] = with_base_paths(options.model_config_file, inside)
            mapped[options.model_config_file] = f"{CONFIG_DIR}/models.config"
            argv += _mount(rewritten, mapped[options.model_config_file])
        else:
            assert options.model_base_path is not None
            argv += _mount(options.model_base_path, f"/models/{options.model_name}")
            argv += ["-e", f"MODEL_NAME={options.model_name}"]
        for extra, target in ((options.batching_parameters_file, "batching_parameters.txt"),
                              (options.monitoring_config_file, "monitoring_config.txt")):
            if extra is not None:
                mapped[extra] = f"{CONFIG_DIR}/{target}"
                argv += _mount(extra, mapped[extra])
        argv.append(image_ref(options.gpu))
        argv += tfs_flags(options, path=lambda p: mapped.get(p, str(p)), entrypoint_flags=False)
        return Launch(argv=argv, container=container, files=files)

    def prepare(self, options: ServeOptions, notify: Notify) -> None:
        """Pull the image when `docker image inspect` does not know it; progress goes to `notify`."""
        image = image_ref(options.gpu)
        inspect = subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                                 timeout=60)
        if inspect.returncode == 0:
            return
        notify(f"Pulling {image} (docker pull)...")
        proc = subprocess.Popen(["docker", "pull", image], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:  # drained to the end: the pipe can never fill up
            notify(line.rstrip())
            tail = (tail + [line.rstrip()])[-10:]
        if proc.wait() != 0:
            raise UnavailableError(f"`docker pull {image}` failed", details="\n".join(tail),
                                   hint="check the tag (MLSERVE_DOCKER_TAG) and the network, "
                                        f"or pull it yourself: docker pull {image}")

    def guard(self, record: ServerRecord) -> subprocess.Popen | None:
        if not record.container:
            return None
        return subprocess.Popen(
            [sys.executable, "-m", "mlserve.runtimes.watchdog", str(os.getpid()), record.container],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def is_running(self, record: ServerRecord) -> bool | None:
        if not record.container:
            return None
        try:
            done = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}",
                                   record.container], capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.returncode == 0 and done.stdout.strip() == "true"

    def owns_ports(self, record: ServerRecord) -> bool:
        """A port proxy this user can see (rootless Docker, the stand-in) answers the question
        as for any process; Docker's root-owned proxy cannot be seen, and then the engine's word
        that our container runs is the proof: Docker publishes a port for one container only."""
        owners = [process.port_owned_by_session(port, record.pid)
                  for port in (record.rest_port, record.grpc_port)]
        if all(owner is True for owner in owners):
            return True
        if any(owner is False for owner in owners):
            return False
        return bool(self.is_running(record))

    def request_stop(self, record: ServerRecord, grace: float) -> subprocess.Popen | None:
        """`docker stop` only: signalling the attached client too would signal the server twice
        (the client proxies signals to the container)."""
        if not record.container:
            return super().request_stop(record, grace)
        return subprocess.Popen(["docker", "stop", "-t", str(max(1, int(grace))), record.container],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def force_stop(self, record: ServerRecord) -> None:
        super().force_stop(record)
        if record.container:
            try:
                subprocess.run(["docker", "rm", "-f", record.container], capture_output=True,
                               timeout=30, check=False)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def logs_command(self, record: ServerRecord, follow: bool, lines: int) -> list[str] | None:
        if not record.container:
            return None
        return ["docker", "logs", "--tail", str(lines), *(["--follow"] if follow else []),
                record.container]

    def describe(self) -> dict[str, object]:
        ok, why = engine_check()
        return {"runtime": self.name, "available": ok, "client": docker_client(),
                "engine": ok, "detail": why, "image": image_ref(False),
                "gpu_image": image_ref(True)}

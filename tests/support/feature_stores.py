"""Helpers for the feature-lookup tests: the delivery-time example (model and features, made by
examples/delivery_time's own scripts) and a real `redis-server` on a free port."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from support.paths import ROOT
from support.ports import free_port

EXAMPLE = ROOT / "examples" / "delivery_time"
MODEL = "delivery_time"


def example_module(name: str) -> ModuleType:
    """examples/delivery_time/<name>.py, imported (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"delivery_time_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def features_of(restaurants: int = 20, seed: int = 0) -> dict[str, dict[str, float]]:
    features = example_module("features")
    return features.aggregate(features.generate_orders(restaurants, seed))


@dataclass
class RedisServer:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


def start_redis(folder: Path, port: int | None = None) -> RedisServer:
    """A real redis-server on 127.0.0.1 (no persistence; DEBUG allowed so a test can make it
    slow), waited for until it answers PING."""
    binary = redis_binary()
    assert binary, "redis-server is not installed (apt-get install redis-server)"
    port = port or free_port()
    log = folder / f"redis-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--enable-debug-command", "yes",
                                 "--dir", str(folder)], stdout=out, stderr=subprocess.STDOUT)
    server = RedisServer(proc, port, log)
    deadline = time.monotonic() + 10
    while True:
        try:
            if server.client().ping():
                return server
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"redis-server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)

"""docs/feature-lookup.md runs as written, every block in page order: the embedded-store (SQLite)
part and the Redis part, against a real redis-server this test starts (tests/test_docs.py runs
the page too, with the Redis block marked not-run). The page's fixed ports become free ones."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.feature_stores import redis_binary, start_redis
from support.ports import free_port
from support.docs import DocsWorld, page_blocks
from support.paths import ROOT

PAGE = ROOT / "docs" / "feature-lookup.md"


@pytest.mark.slow
def test_feature_lookup_page_runs_against_sqlite_and_a_real_redis(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="redis-py is not installed (pip install -e .[redis])")
    if redis_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    redis = start_redis(tmp_path)
    world = DocsWorld(tmp_path)
    world.env["REDIS_URL"] = redis.url
    ports = {p: str(free_port()) for p in ("8520", "8521", "8530", "8531")}
    blocks = page_blocks(PAGE)
    assert any(b.skip and "REDIS_URL" in b.code for b in blocks), "the page's Redis block is gone"
    try:
        for block in blocks:
            code = re.sub(r"(?<=[:= ])(85[23][01])\b", lambda m: ports[m.group(1)], block.code)
            proc = world.run(code, block.language)
            assert proc.returncode == 0, (f"{block.id} exited {proc.returncode}\n{proc.stdout[-2000:]}\n"
                                          f"{proc.stderr[-3000:]}")
            assert '"error"' not in proc.stdout or "nowhere" in proc.stdout, proc.stdout
        assert redis.client().exists("restaurant:r0")
    finally:
        world.stop_all()
        world.kill_leftovers()
        redis.stop()

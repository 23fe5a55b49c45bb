"""Saved open-loop sweeps (`bench --rate --save FILE`) and several drawn on one chart
(`bench --plot FILE... --objective-ms MS`)."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from mlserve.bench.sweeps import FORMAT, load_sweep, objective_held, save_sweep
from mlserve.errors import DataError, NotFoundError
from mlserve.tools.plots import SWEEPS_FIGURE_PX, plot_sweeps
from support.cli import parse_json_stdout, run_cli
from support.ports import free_port


def _level(rate: float, p99: float | None, drops: int = 0) -> dict:
    return {"rate": rate, "achieved_per_s": rate, "p50_ms": p99 and p99 / 3, "p99_ms": p99,
            "drops": drops, "errors": 0, "repeat_fraction": 1.0}


def test_a_saved_sweep_round_trips(tmp_path) -> None:
    document = {"open_loop": True, "repeat": 0.5, "levels": [_level(100, 2.0), _level(200, 30.0, drops=3)]}
    path = save_sweep(tmp_path / "sub" / "fixed.json", document)
    sweep = load_sweep(path)
    assert sweep.label == "fixed" and sweep.levels == document["levels"] and sweep.path == path
    assert sweep.document == {"format": FORMAT, "label": "fixed", **document}
    assert load_sweep(save_sweep(path, document, label="batching")).label == "batching"
    assert [p.name for p in path.parent.iterdir()] == ["fixed.json"]  # no partial file left
    assert objective_held(document["levels"][0], 10) and not objective_held(document["levels"][1], 50)
    assert not objective_held(_level(300, None), 10)


def test_what_is_not_a_sweep_is_refused(tmp_path) -> None:
    with pytest.raises(NotFoundError):
        load_sweep(tmp_path / "missing.json")
    for text in ("not json", "[]", json.dumps({"levels": []}),
                 json.dumps({"format": FORMAT, "levels": [{"p99_ms": 1}]})):
        (bad := tmp_path / "bad.json").write_text(text)
        with pytest.raises(DataError):
            load_sweep(bad)


def test_plot_sweeps_draws_every_label(tmp_path) -> None:
    png = plot_sweeps([("none", [_level(100, 1.5), _level(400, 80.0, drops=5), _level(800, None)]),
                       ("fixed", [_level(100, 2.5), _level(400, 6.0)]), ("empty", [])],
                      tmp_path / "p99.png", objective_ms=10)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == SWEEPS_FIGURE_PX


@pytest.mark.slow
def test_save_then_plot_from_the_cli(tmp_path) -> None:
    runs = {}
    for name, extra in (("same", []), ("half", ["--repeat", "0.5", "--sweep-label", "half repeated"])):
        proc = run_cli("bench", "--self-test", "--rate", "100,200", "--duration", "0.3", "--json",
                       "--save", str(tmp_path / f"{name}.json"), *extra)
        assert proc.returncode == 0, proc.stderr
        assert f"Saved: {tmp_path / f'{name}.json'}" in proc.stderr  # stdout holds the JSON only
        runs[name] = parse_json_stdout(proc)
    saved = load_sweep(tmp_path / "half.json")
    assert saved.label == "half repeated" and saved.document["levels"] == runs["half"]["levels"]
    assert {k: v for k, v in saved.document.items() if k not in ("format", "label")} == runs["half"]

    png = tmp_path / "p99.png"
    proc = run_cli("bench", "--plot", str(tmp_path / "same.json"), str(tmp_path / "half.json"),
                   "--objective-ms", "1000", "--plot-file", str(png))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"Plot: {png}"
    assert "half repeated" in proc.stdout and "p99 <= 1000 ms" in proc.stdout
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == SWEEPS_FIGURE_PX

    proc = run_cli("bench", "--plot-file", str(png), str(tmp_path / "same.json"), "--objective-ms", "1000",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    report = parse_json_stdout(proc)
    assert report["sweeps"] == ["same"] and report["plot"] == str(png)
    assert [row["rate"] for row in report["levels"]] == [100.0, 200.0]
    assert all(row["objective_held"] == (row["p99_ms"] <= 1000 and not row["drops"])
               for row in report["levels"])


@pytest.mark.parametrize("args,code", [
    (["--plot", "{missing}"], 4),
    (["--plot", "{bad}"], 5),
    (["{good}"], 2),  # saved sweeps without --plot
    (["--plot", "{good}", "--rate", "10"], 2),
    (["--plot", "{good}", "--objective-ms", "0"], 2),
    (["--rate", "10", "--objective-ms", "10"], 2),
    (["--save", "{good}"], 2),  # --save without --rate
    (["--rate", "10", "--sweep-label", "x"], 2),  # a label without --save
])
def test_bad_sweep_options(tmp_path, args, code) -> None:
    good = save_sweep(tmp_path / "good.json", {"levels": [_level(100, 2.0)]})
    (bad := tmp_path / "bad.json").write_text("{}")
    names = {"missing": tmp_path / "missing.json", "bad": bad, "good": good}
    plot_file = ["--plot-file", str(tmp_path / "p.png")] if "--plot" in args else []
    proc = run_cli("bench", "--url", f"http://127.0.0.1:{free_port()}",
                   *[a.format(**names) for a in args], *plot_file)
    assert proc.returncode == code, proc.stderr
    assert "Error:" in proc.stderr and "Hint:" in proc.stderr
    assert not (tmp_path / "p.png").exists()

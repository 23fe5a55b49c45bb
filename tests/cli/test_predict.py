"""`mlserve predict` as a user runs it (a subprocess) against a real embedded server subprocess."""
from __future__ import annotations


import numpy as np
import pytest
from support.cli import heavy_imports
from PIL import Image

from mlserve.model.inputs import load_image_file, validate_images
from mlserve.errors import DataError
from mlserve.tools.plots import PREDICTION_TILE_PX
from support.cli import parse_json_stdout, run_cli
from support.models import assert_same_digits, reference_probabilities
from support.ports import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_split():
    from mlserve.model.data import load_mnist

    data = load_mnist("sample")
    return data.x_test, data.y_test


def _rest(server) -> list[str]:
    return ["--url", server.url]


def _grpc(server) -> list[str]:
    return ["--grpc", "--grpc-server", server.grpc]


@pytest.mark.parametrize("transport", ["rest", "columnar", "grpc"])
def test_json_is_the_only_stdout_and_matches_the_model(digits_server, test_split, transport) -> None:
    flags = {"rest": _rest(digits_server), "columnar": [*_rest(digits_server), "--columnar"],
             "grpc": _grpc(digits_server)}[transport]
    proc = run_cli("predict", "--index", "5", "--count", "4", "--json", *flags)
    assert proc.returncode == 0, proc.stderr
    rows = parse_json_stdout(proc)
    x, y = test_split
    expected = reference_probabilities(digits_server.base, x[5:9, ..., None] / 255.0)
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["label"] for r in rows] == [int(v) for v in y[5:9]]
    assert_same_digits([r["predicted"] for r in rows], expected)
    np.testing.assert_allclose([r["probabilities"] for r in rows], expected, atol=1e-5)
    for r in rows:
        assert set(r) >= {"index", "predicted", "confidence", "label", "probabilities"}
        assert r["confidence"] == pytest.approx(max(r["probabilities"]), abs=1e-5)


def test_table_and_plot(digits_server, tmp_path) -> None:
    png = tmp_path / "figure.png"
    proc = run_cli("predict", *_rest(digits_server), "--plot-file", str(png))
    assert proc.returncode == 0, proc.stderr
    assert "test[0]" in proc.stdout and "test[2]" in proc.stdout and "correct" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == f"Plot: {png}"  # the path, after the table
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (PREDICTION_TILE_PX[0] * 3, PREDICTION_TILE_PX[1])


def test_json_with_plot_prints_the_path_on_stderr(digits_server, mlserve_home) -> None:
    proc = run_cli("predict", *_grpc(digits_server), "--random", "2", "--seed", "1", "--json", "--plot",
                   env={"MLSERVE_HOME": str(mlserve_home)})
    assert proc.returncode == 0, proc.stderr
    assert len(parse_json_stdout(proc)) == 2
    written = list((mlserve_home / "plots").glob("predictions-*.png"))
    assert len(written) == 1 and f"Plot: {written[0]}" in proc.stderr
    with Image.open(written[0]) as image:
        assert image.size == (PREDICTION_TILE_PX[0] * 2, PREDICTION_TILE_PX[1])


def test_random_is_reproducible_with_a_seed(digits_server) -> None:
    runs = [parse_json_stdout(run_cli("predict", *_rest(digits_server), "--random", "3", "--seed", "7",
                                      "--json")) for _ in range(2)]
    assert [r["name"] for r in runs[0]] == [r["name"] for r in runs[1]]


def test_unreachable_server_exits_7_with_the_hint() -> None:
    proc = run_cli("predict", "--url", f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 7
    assert "Error:" in proc.stderr and "mlserve serve" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("flags,expect", [(["--model", "nope"], "nope"),
                                          (["--version", "9"], "version 1 (AVAILABLE)")])
def test_unknown_model_or_version_exits_4(digits_server, flags, expect) -> None:
    proc = run_cli("predict", *_rest(digits_server), *flags)
    assert proc.returncode == 4
    assert expect in " ".join(proc.stderr.split())


def test_version_and_label_together_is_a_usage_error(digits_server) -> None:
    proc = run_cli("predict", *_rest(digits_server), "--version", "1", "--label", "stable")
    assert proc.returncode == 2 and "not both" in proc.stderr


def test_image_files_black_on_white_are_inverted(digits_server, test_split, tmp_path) -> None:
    x, _ = test_split
    # a digit as a person draws it: black ink on white paper, larger than 28×28, the page not
    # square (scaled evenly, so MNIST's framing gives back the original's proportions)
    paper = np.full((140, 124), 255, np.uint8)
    paper[14:126, 6:118] = 255 - np.asarray(Image.fromarray(x[0]).resize((112, 112)))
    Image.fromarray(paper).save(tmp_path / "seven.png")
    Image.fromarray(x[1]).convert("RGB").save(tmp_path / "two.jpg", quality=95)  # already MNIST-like
    proc = run_cli("predict", *_rest(digits_server), "--image", str(tmp_path / "seven.png"),
                   "--image", str(tmp_path / "two.jpg"), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = parse_json_stdout(proc)
    assert [r["name"] for r in rows] == ["seven.png", "two.jpg"]
    assert [r["label"] for r in rows] == [None, None]
    assert "seven.png: light background, inverted" in proc.stderr and "two.jpg" not in proc.stderr
    # the model's answer for the pixels the files decode to (inverted, rescaled to 28x28): the
    # tiny test model need not read the resampled seven as the original seven
    pixels = np.stack([load_image_file(tmp_path / name)[0] for name in ("seven.png", "two.jpg")])
    reference = reference_probabilities(digits_server.base, pixels[..., None])
    assert_same_digits([r["predicted"] for r in rows], reference)


def test_load_image_file_inverts_light_backgrounds(tmp_path) -> None:
    dark = np.zeros((28, 28), np.uint8)
    dark[10:18, 12:16] = 255
    Image.fromarray(255 - dark).save(tmp_path / "light.png")
    Image.fromarray(dark).save(tmp_path / "dark.png")
    light_pixels, flipped = load_image_file(tmp_path / "light.png")
    dark_pixels, kept = load_image_file(tmp_path / "dark.png")
    assert flipped and not kept
    np.testing.assert_allclose(light_pixels, dark / 255.0, atol=1e-6)
    np.testing.assert_allclose(dark_pixels, dark / 255.0, atol=1e-6)


@pytest.mark.parametrize("shape,dtype", [((2, 784), np.uint8), ((2, 28, 28, 1), np.float32),
                                         ((2, 28, 28), np.uint8)])
def test_npy_inputs_in_every_accepted_layout(digits_server, test_split, tmp_path, shape, dtype) -> None:
    x, _ = test_split
    array = x[:2].astype(dtype) / (255.0 if dtype == np.float32 else 1)
    np.save(tmp_path / "digits.npy", array.reshape(shape).astype(dtype))
    proc = run_cli("predict", *_rest(digits_server), "--npy", str(tmp_path / "digits.npy"), "--json")
    assert proc.returncode == 0, proc.stderr
    reference = reference_probabilities(digits_server.base, x[:2, ..., None] / 255.0)
    assert_same_digits([r["predicted"] for r in parse_json_stdout(proc)], reference)


def test_wrong_shape_fails_before_anything_is_sent(tmp_path) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((2, 27, 27), np.uint8))
    # nothing listens at --url: exit 5 (DataError), not 7, proves the check comes first
    proc = run_cli("predict", "--url", f"http://127.0.0.1:{free_port()}", "--npy", str(tmp_path / "bad.npy"))
    assert proc.returncode == 5
    assert "(2, 27, 27)" in proc.stderr and "(N, 28, 28)" in " ".join(proc.stderr.split())


@pytest.mark.parametrize("bad,match", [(np.zeros((3, 28, 28, 3)), "shape"), (np.full((1, 28, 28), 300.0), "255"),
                                       (np.full((1, 28, 28), -1.0), "negative"), (np.zeros((0, 28, 28)), "no images")])
def test_validate_images_rejects(bad, match) -> None:
    with pytest.raises(DataError, match=match):
        validate_images(bad)


def test_predict_imports_neither_tensorflow_nor_matplotlib(digits_server) -> None:
    for args in (["predict", "--help"], ["predict", *_grpc(digits_server), "--json"],
                 ["predict", *_rest(digits_server)]):
        assert heavy_imports(args) == {"code": 0, "heavy": []}, args


def _photo_variants(digit: np.ndarray, tmp_path) -> dict[str, object]:
    """One 28×28 MNIST digit drawn three ways a user's files look, saved as files."""
    ink = Image.fromarray(digit)
    rng = np.random.default_rng(0)
    # 1. small, dark on a large sheet of slightly grey, slightly noisy paper (a phone photo)
    paper = np.clip(rng.normal(235, 4, (600, 800)), 0, 255).astype(np.uint8)
    page = Image.fromarray(paper)
    small = ink.resize((80, 80), Image.BILINEAR)
    page.paste(Image.fromarray(235 - (np.asarray(small, np.float32) * 235 / 255).astype(np.uint8)),
               (600, 420), Image.fromarray(np.asarray(small)))
    page.save(tmp_path / "photo.jpg", quality=90)
    # 2. large and off-centre, white on black
    dark = Image.new("L", (800, 600), 0)
    dark.paste(ink.resize((420, 420), Image.BILINEAR), (20, 150))
    dark.save(tmp_path / "large.png")
    # 3. inverted (black on white), enlarged
    Image.fromarray(255 - digit).resize((280, 280), Image.BILINEAR).save(tmp_path / "inverted.png")
    return {"photo": tmp_path / "photo.jpg", "large": tmp_path / "large.png",
            "inverted": tmp_path / "inverted.png"}


def test_photo_like_digits_are_framed_as_mnist(digits_model_base, test_split, tmp_path) -> None:
    from mlserve.model.inputs import from_image_files

    x, y = test_split
    # The test digit the (one-epoch, unseeded) model gets right most confidently: any clear digit
    # would do, and the most confident one is clear whatever this run's weights are.
    original = reference_probabilities(digits_model_base, x[..., None] / 255.0)
    right = np.flatnonzero(original.argmax(axis=1) == y)
    index = int(right[original[right].max(axis=1).argmax()])
    files = _photo_variants(x[index], tmp_path)
    batch = from_image_files(list(files.values()))
    assert batch.inverted == [True, False, True]
    assert batch.images.shape == (3, 28, 28, 1)
    for image in batch.images[..., 0]:  # each framed as MNIST: in 20×20, centred by its mass
        rows = np.flatnonzero(image.max(axis=1) > 0.1)
        cols = np.flatnonzero(image.max(axis=0) > 0.1)
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 20
        cy, cx = (np.indices(image.shape) * image).reshape(2, -1).sum(axis=1) / image.sum()
        assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    predicted = reference_probabilities(digits_model_base, batch.images).argmax(axis=1)
    assert predicted.tolist() == [int(original[index].argmax())] * 3, (index, int(y[index]))


def test_a_blank_page_is_an_empty_frame(tmp_path) -> None:
    Image.new("L", (300, 200), 250).save(tmp_path / "blank.png")
    pixels, inverted = load_image_file(tmp_path / "blank.png")
    assert inverted and pixels.shape == (28, 28) and float(pixels.max()) == 0.0


def test_plot_of_many_digits_wraps_at_ten_per_row(digits_server, tmp_path) -> None:
    from mlserve.tools.plots import prediction_figure_px

    png = tmp_path / "many.png"
    proc = run_cli("predict", *_rest(digits_server), "--random", "12", "--seed", "3",
                   "--plot-file", str(png))
    assert proc.returncode == 0, proc.stderr
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == prediction_figure_px(12) == (PREDICTION_TILE_PX[0] * 10,
                                                          PREDICTION_TILE_PX[1] * 2)

"""`mlserve ui` in a real headless Chromium, against a real embedded server (two versions, labels
stable -> 1 and canary -> 2, a Prometheus page) and the real `mlserve ui` command.

One server and one page app for the whole module; tests run in file order and the last one stops
the model server. Screenshots of each state go to <pytest tmp>/ui-screens (and to
$MLSERVE_UI_SCREENSHOTS when set); their folder is printed. Without Chromium and chromedriver the
browser tests skip and say so; the API checks below still run.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from support.servers import MODEL_NAME, ServerProcess, launch_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
CONFIG = """model_config_list {{
  config {{
    name: "{model}"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
}}
"""
MONITORING = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'


@pytest.fixture(scope="module")
def ui_server(digits_model_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The tiny trained digits model as versions 1 and 2, labels, metrics, one label move recorded."""
    from mlserve.rollout import history

    root = tmp_path_factory.mktemp("ui-server")
    base = root / "models" / MODEL_NAME
    shutil.copytree(digits_model_base / "1", base / "1")
    shutil.copytree(digits_model_base / "1", base / "2")  # the same weights: both must agree
    config = root / "models.config"
    config.write_text(CONFIG.format(model=MODEL_NAME, base=base))
    monitoring = root / "monitoring.config"
    monitoring.write_text(MONITORING)
    history.append(config, [history.Move(MODEL_NAME, "canary", None, 2, "canary", "test@host")])
    server = launch_server([f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models",
                            f"--monitoring_config_file={monitoring}"], root / "server.log",
                           models=[MODEL_NAME])
    server.base = config  # the tests below need the config file
    yield server
    server.stop()


def start_ui(args: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """`mlserve ui ARGS --port 0 --no-browser` as a user runs it; its stdout's first line is the page."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mlserve", "ui", *args, "--port", "0", "--no-browser"],
                                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            assert proc.poll() is None, f"mlserve ui exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"mlserve ui did not start:\n{log.read_text()}"
            url = next((line.strip() for line in log.read_text().splitlines() if line.startswith("http://")), None)
            time.sleep(0.1)
        urllib.request.urlopen(url + "api/info", timeout=30).read()  # listening before the URL is printed
    except BaseException:
        stop_ui(proc)
        raise
    return proc, url


def stop_ui(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def page_url(ui_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_ui(["--url", ui_server.url, "--model", MODEL_NAME, "--config", str(ui_server.base)],
                         tmp_path_factory.mktemp("ui-app") / "ui.log")
    yield url
    stop_ui(proc)


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("MLSERVE_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screens"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nui screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(page_url: str):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no Chromium/chromedriver on this machine (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.get(page_url)
    yield driver
    driver.quit()


# -- helpers -----------------------------------------------------------------------------------
def wait_for(driver, script: str, timeout: float = 20):
    """Until the JavaScript expression is truthy; its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script("return " + script))


def draw_seven(driver, kind: str = "mouse") -> None:
    """A 7 in one stroke with pointer events: the top bar, then the diagonal down to the left."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    pad = driver.find_element("id", "pad")
    actions = ActionBuilder(driver, mouse=PointerInput(getattr(interaction, f"POINTER_{kind.upper()}"), kind))
    pointer = actions.pointer_action
    # offsets are from the element's centre (280×280: -140..140)
    pointer.move_to(pad, -80, -90).pointer_down()
    for x, y in [(-40, -90), (0, -90), (40, -90), (80, -90), (60, -40), (35, 10), (10, 60), (-10, 100)]:
        pointer.move_to(pad, x, y)
    pointer.pointer_up()
    actions.perform()


def answers(driver) -> list[dict]:
    return driver.execute_script("""return [...document.querySelectorAll('#answers .answer')].map(a => ({
        choice: a.dataset.choice, version: a.dataset.version, predicted: a.dataset.predicted,
        error: a.dataset.error || '', probabilities: a.dataset.probabilities ? JSON.parse(a.dataset.probabilities) : null}))""")


def sent_png(driver) -> bytes:
    url = driver.execute_script("return window.mlserveLast && window.mlserveLast.png")
    return base64.b64decode(url.split(",", 1)[1])


def direct_predict(server: ServerProcess, image: np.ndarray, version: int | None = None) -> np.ndarray:
    """The same framed image sent straight to the model server over REST, not through the app."""
    from mlserve.client import ModelTarget
    from mlserve.client.rest import RestClient

    client = RestClient(server.url, ModelTarget(MODEL_NAME, version=version))
    try:
        return client.predict(image.reshape(1, 28, 28, 1))[0]
    finally:
        client.close()


def shot(driver, screens: Path, name: str) -> Path:
    path = screens / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


# -- the page in a browser ---------------------------------------------------------------------
def test_draw_seven_shows_the_models_answer(browser, ui_server, screens) -> None:
    from mlserve.model.inputs import load_image_bytes

    wait_for(browser, "document.querySelectorAll('#pick1 option').length >= 4")  # latest, v2, v1, labels
    draw_seven(browser, "pen")
    wait_for(browser, "document.querySelector('#answers .answer[data-predicted]')")
    [shown] = answers(browser)
    image, inverted = load_image_bytes(sent_png(browser))  # the one framing, on the PNG the page sent
    assert inverted  # black ink on white paper
    expected = direct_predict(ui_server, image)
    np.testing.assert_allclose(shown["probabilities"], expected, atol=1e-4)
    assert int(shown["predicted"]) == int(np.argmax(expected))
    assert shown["version"] == "2"  # latest
    seen = np.asarray(browser.execute_script("return window.mlserveLast.answer.image"))
    np.testing.assert_allclose(seen, image, atol=1e-3)  # the 28×28 the page shows is what was sent
    top = browser.find_element("css selector", "#answers .bars li.top").text
    assert top.startswith(shown["predicted"])
    print(f"drawn 7: the model says {shown['predicted']} ({max(expected):.3f})")
    shot(browser, screens, "1-draw")


def test_upload_a_digit_image(browser, ui_server, screens, tmp_path: Path) -> None:
    from PIL import Image

    from mlserve.model.data import load_mnist
    from mlserve.model.inputs import load_image_file

    mnist = load_mnist("sample", allow_download=False)
    digit = 255 - mnist.x_test[0].astype(np.uint8)  # dark ink on light paper, as a scan
    path = tmp_path / "digit.png"
    Image.fromarray(digit).resize((140, 140), Image.BILINEAR).save(path)
    before = browser.execute_script("return window.mlserveLast && window.mlserveLast.png")
    browser.find_element("id", "upload").send_keys(str(path))
    wait_for(browser, f"window.mlserveLast && window.mlserveLast.png !== {json.dumps(before)}")
    [shown] = answers(browser)
    expected = direct_predict(ui_server, load_image_file(path)[0])
    np.testing.assert_allclose(shown["probabilities"], expected, atol=1e-4)
    print(f"uploaded test[0] (label {int(mnist.y_test[0])}): the model says {shown['predicted']}")
    shot(browser, screens, "2-upload")


def test_too_big_an_upload_is_refused_on_the_page(browser, tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG" + b"\0" * (4 << 20))  # over the 4 MiB cap; never sent
    browser.find_element("id", "upload").send_keys(str(path))
    text = wait_for(browser, "document.querySelector('#answers .error') && "
                             "document.querySelector('#answers .error').textContent")
    assert "big.png is" in text and "more than the" in text


def test_two_versions_answer_side_by_side(browser, ui_server, screens) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "pick1")).select_by_value("stable")
    Select(browser.find_element("id", "pick2")).select_by_value("v2")  # picking re-sends the image
    wait_for(browser, "document.querySelectorAll('#answers .answer[data-predicted]').length == 2")
    first, second = answers(browser)
    assert (first["choice"], first["version"]) == ("stable", "1")
    assert (second["choice"], second["version"]) == ("v2", "2")
    np.testing.assert_allclose(first["probabilities"], second["probabilities"], atol=1e-5)  # same weights
    shot(browser, screens, "3-side-by-side")


def test_live_panel_after_load(browser, ui_server, page_url, screens) -> None:
    from mlserve.client import ModelTarget
    from mlserve.client.rest import RestClient

    wait_for(browser, "document.querySelector('#versions tr')")
    rows = browser.execute_script("return [...document.querySelectorAll('#versions tr')].map(r => r.innerText)")
    assert any("1" in r and "AVAILABLE" in r and "stable" in r for r in rows), rows
    assert any("2" in r and "canary" in r for r in rows), rows
    assert "canary" in browser.find_element("id", "history").text
    client = RestClient(ui_server.url, ModelTarget(MODEL_NAME))
    images = np.zeros((1, 28, 28, 1), np.float32)
    before = json.loads(urllib.request.urlopen(page_url + "api/live", timeout=30).read())
    try:  # bounded load: 200 requests to 127.0.0.1
        for _ in range(200):
            client.predict(images)
    finally:
        client.close()
    total = before["metrics"]["requests_total"] + 200
    rps = float(wait_for(browser, f"Number(document.getElementById('rps').dataset.total) >= {total} && "
                                  "Number(document.getElementById('rps').dataset.value) > 0 && "
                                  "document.getElementById('rps').dataset.value"))
    after = json.loads(urllib.request.urlopen(page_url + "api/live", timeout=30).read())
    assert after["metrics"]["requests_total"] - before["metrics"]["requests_total"] >= 200
    assert rps > 0
    assert browser.find_element("id", "p50").text.endswith("ms")
    print(f"live panel: {rps} req/s after 200 requests")
    shot(browser, screens, "4-live")


def test_narrow_screen_and_keyboard(browser, screens) -> None:
    browser.set_window_size(360, 900)
    try:
        time.sleep(0.3)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 360, f"the page scrolls sideways at 360 px ({width} px wide)"
        unlabeled = browser.execute_script("""return [...document.querySelectorAll('input, select, button, canvas#pad')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.id)""")
        assert unlabeled == []
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        browser.execute_script("document.activeElement.blur()")
        focused = []
        for _ in range(6):  # Tab walks through the controls, in the page's order
            ActionChains(browser).send_keys(Keys.TAB).perform()
            focused.append(browser.execute_script("return document.activeElement.id"))
        assert {"pad", "clear", "upload", "pick1", "pick2"} <= set(focused), focused
        shot(browser, screens, "5-narrow-360px")
    finally:
        browser.set_window_size(1280, 1000)


def test_predict_over_grpc_answers_as_rest(ui_server, page_url, tmp_path: Path) -> None:
    """`mlserve ui --grpc-server`: the same image answered over gRPC as the REST page answers it."""
    from PIL import Image

    image = Image.new("L", (280, 280), 255)
    image.paste(0, (100, 40, 130, 240))  # a black bar: a 1
    path = tmp_path / "one.png"
    image.save(path)
    proc, grpc_page = start_ui(["--url", ui_server.url, "--grpc-server", ui_server.grpc, "--model", MODEL_NAME],
                               tmp_path / "ui-grpc.log")
    try:
        headers = {"x-mlserve-ui": "1", "content-type": "image/png"}
        status, over_grpc = _post(grpc_page + "api/predict?pick=v1", path.read_bytes(), headers)
        assert status == 200, over_grpc
        status, over_rest = _post(page_url + "api/predict?pick=v1", path.read_bytes(), headers)
        assert status == 200, over_rest
    finally:
        stop_ui(proc)
    assert over_grpc["answers"][0]["version"] == 1 and not over_grpc["answers"][0]["error"]
    np.testing.assert_allclose(over_grpc["answers"][0]["probabilities"], over_rest["answers"][0]["probabilities"],
                               atol=1e-5)


def test_no_metrics_page_is_said_plainly(ui_server, tmp_path: Path) -> None:
    """A server without a Prometheus page at the path given (as a plain tensorflow_model_server):
    the panel says so, and versions still show."""
    proc, url = start_ui(["--url", ui_server.url, "--model", MODEL_NAME, "--metrics-path", "/monitoring/none"],
                         tmp_path / "ui-nometrics.log")
    try:
        live = json.loads(urllib.request.urlopen(url + "api/live", timeout=30).read())
    finally:
        stop_ui(proc)
    assert live["server"]["ok"] and [v["version"] for v in live["versions"]] == [2, 1]
    assert live["metrics"]["available"] is False
    assert "has no metrics page at /monitoring/none" in live["metrics"]["message"]
    assert "mlserve serve --monitoring" in live["metrics"]["message"]


def test_stopped_server_says_so(browser, ui_server, screens) -> None:
    ui_server.stop()
    text = wait_for(browser, "!document.getElementById('banner').hidden && "
                             "document.getElementById('banner').textContent")
    assert "does not answer" in text and ui_server.url in text
    browser.find_element("id", "clear").click()
    draw_seven(browser)
    wait_for(browser, "document.querySelector('#answers .answer[data-error]')")
    errors = [a["error"] for a in answers(browser)]
    assert all("no server answers" in e for e in errors), errors
    assert browser.find_element("id", "metrics-note").text
    shot(browser, screens, "6-server-stopped")


# -- the app's guards, without a browser -------------------------------------------------------
def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_app_guards(page_url: str) -> None:
    """Only the page's own requests, only images, only small ones; the Host must be loopback."""
    predict = page_url + "api/predict"
    status, body = _post(predict, b"\x89PNG", {})
    assert status == 403
    status, body = _post(predict, b"not an image", {"x-mlserve-ui": "1"})
    assert status == 400 and "not an image" in body["error"]
    # a declared size over the cap is refused before any of the body is read
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(page_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("x-mlserve-ui", "1")
    conn.putheader("content-length", str((4 << 20) + 1))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["hint"]
    conn.close()
    status, body = _post(predict + "?pick=http://evil.example/", b"x", {"x-mlserve-ui": "1"})
    assert status == 400 and "not a version or label" in body["error"]
    request = urllib.request.Request(page_url, headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    with urllib.request.urlopen(page_url, timeout=10) as response:
        assert "default-src 'self'" in response.headers["content-security-policy"]


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    """A port in use: `Error:` with a hint and the conflict exit code, no traceback, no page."""
    import socket

    from mlserve.errors import ExitCode

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "mlserve", "ui", "--port", str(port), "--no-browser",
                               "--url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert done.returncode == ExitCode.CONFLICT, done.stderr
    assert f"Error: cannot listen on 127.0.0.1:{port}" in done.stderr and "Hint: pick another with --port" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""

"""The viewer as a user sees it: ns-viewer on an edited avatar, opened in headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (``.ci/run`` installs them); without
them the test is skipped with the reason. Everything runs on 127.0.0.1; nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from avatarstudio_ns.edit.trainer import find_checkpoint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    SELENIUM = True
except ImportError:
    SELENIUM = False

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER and SELENIUM),
    reason="needs chromium, chromedriver (apt-get install chromium chromium-driver) and selenium (pip install "
    "selenium); .ci/run installs them",
)

GREEN = torch.tensor([-4.0, 4.0, -4.0])
"""Colour MLP output bias of the shown edit: sigmoid gives pure green, unmistakable in a screenshot."""


@pytest.fixture(scope="module")
def shown_edit(edited, tmp_path_factory) -> Path:
    """The test edit, made plain to see: green inside an edit region covering everything, and a last frame whose code
    moves the head, so that the time control visibly changes the render. Returns its config.yml."""
    config, _ = edited
    folder = tmp_path_factory.mktemp("shown")
    loaded = torch.load(find_checkpoint(config.get_base_dir() / "nerfstudio_models"), weights_only=False)
    state = loaded["pipeline"]
    state["_model.edit_region.grid"].fill_(1.0)
    state["_model.edit_region.fitted"].fill_(True)
    state["_model.appearance.mlp_head.layers.2.weight"].zero_()
    state["_model.appearance.mlp_head.layers.2.bias"].copy_(GREEN)
    state["_model.frame_codes.codes"][-1] *= 30.0
    shown = yaml.load((config.get_base_dir() / "config.yml").read_text(), Loader=yaml.Loader)
    shown.output_dir = folder
    shown.timestamp = "shown"
    checkpoints = shown.get_checkpoint_dir()
    checkpoints.mkdir(parents=True)
    torch.save(loaded, checkpoints / "step-000000000.ckpt")
    path = shown.get_base_dir() / "config.yml"
    path.write_text(yaml.dump(shown))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(command: list[str], port: int, log: Path):
    """Runs ``command`` (a nerfstudio command whose viewer listens on 127.0.0.1:``port``); yields the viewer's URL
    and the process once the viewer answers."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while True:
            assert process.poll() is None, f"{command[2]} exited:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(url, timeout=5).status == 200:
                    break
            assert time.time() < deadline, f"the viewer did not answer:\n{log.read_text()[-3000:]}"
            time.sleep(2)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _viewer(config: Path, log: Path):
    """ns-viewer on ``config``, bound to 127.0.0.1."""
    port = _free_port()
    command = [sys.executable, "-m", "nerfstudio.scripts.viewer.run_viewer", "--load-config", str(config)]
    command += ["--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port)]
    return _serve(command, port, log)


@contextlib.contextmanager
def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=960,540",
        "--force-device-scale-factor=1",
        "--enable-unsafe-swiftshader",  # WebGL on the CPU
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver) -> np.ndarray:
    """The page as RGB; retried, since a software-rendered WebGL page on a busy CPU can miss the driver's deadline."""
    from selenium.common.exceptions import TimeoutException

    for attempt in range(5):
        try:
            return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")).astype(np.int16)
        except TimeoutException:
            if attempt == 4:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def _green(image: np.ndarray) -> np.ndarray:
    """Where the page shows the edit's green."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return (g > r + 80) & (g > b + 80)


def _green_pixels(image: np.ndarray) -> int:
    return int(_green(image).sum())


def _whole_head_in_view(image: np.ndarray) -> bool:
    """Whether the green head is seen whole: enough green pixels, but under a third of the page and none on its left
    edge (the viewport's), which a camera inside or against the head fills."""
    green = _green_pixels(image)
    return green > 2000 and green < image.shape[0] * image.shape[1] / 3 and _green_pixels(image[:, :2]) == 0


def _settled(driver, timeout: float = 120) -> np.ndarray:
    """The page once two screenshots 3 s apart agree (the viewer has finished refining its render)."""
    previous = _screenshot(driver)
    deadline = time.time() + timeout
    while True:
        time.sleep(3)
        image = _screenshot(driver)
        if np.abs(image - previous).mean() < 0.2:
            return image
        assert time.time() < deadline, "the render did not settle"
        previous = image


def _wait_for(condition, timeout: float, what: str):
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value is not None and (isinstance(value, np.ndarray) or value):
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(3)


def _control(driver, label: str):
    """The input of the viewer's GUI control whose label reads ``label``."""
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.XPATH, f"//label[normalize-space(text())='{label}']")
    return driver.find_element(By.ID, element.get_attribute("for"))


def test_the_viewer_shows_the_edited_head_its_time_and_the_original_appearance(shown_edit, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with _viewer(shown_edit, tmp_path / "viewer.log") as (url, _), _browser() as driver:
        driver.get(url)
        time_label = "//label[normalize-space(text())='Time']"
        _wait_for(lambda: driver.find_elements(By.XPATH, time_label), 300, "the viewer's controls")

        # The head is in view on open (the viewer starts at the frontal camera): the edit's green covers part of the
        # page, not all of the viewport as a camera inside or against the head shows it.
        def head_in_view():
            image = _screenshot(driver)
            return image if _whole_head_in_view(image) else None

        _wait_for(head_in_view, 300, "the green head in the viewport")
        first = _settled(driver)

        # Time: moving the slider to the end renders the last frame, whose code moves the head.
        slider = _control(driver, "Time").find_element(By.CSS_SELECTOR, "[role=slider]")
        slider.click()
        slider.send_keys(Keys.END)
        assert slider.get_attribute("aria-valuenow") == "1"

        # Compared once the render has settled (moving a control first shows a coarser render of the same frame), and
        # on the green head alone: the panel scrolls to the slider, and the training cameras' frustums show the
        # captured images of the new time whatever the avatar does.
        # Two settled renders of one frame differ in a few hundred pixels at the head's edge; the last frame's moves
        # most of it.
        def changed_from_first(image: np.ndarray) -> int:
            return int((_green(image) != _green(first)).sum())

        def moved():
            image = _settled(driver)
            return image if changed_from_first(image) > _green_pixels(first) / 4 else None

        last = _wait_for(moved, 180, "the render at the last time")

        # And back at the first time, the first render again: the change came from the time, nothing else.
        slider.send_keys(Keys.HOME)
        assert slider.get_attribute("aria-valuenow") == "0"
        _wait_for(
            lambda: changed_from_first(_settled(driver)) < changed_from_first(last) / 4, 180, "the render at time 0"
        )

        # Before / after: nerfstudio's Output type shows the recon's colour (rgb_original), not the edit's green.
        _control(driver, "Output type").click()
        option = "//*[@role='option' and normalize-space()='rgb_original']"
        _wait_for(lambda: driver.find_elements(By.XPATH, option), 30, "the Show options")
        driver.find_element(By.XPATH, option).click()
        _wait_for(lambda: _green_pixels(_screenshot(driver)) < 200, 180, "the original appearance")


@pytest.fixture
def live_edit(edited, tmp_path) -> tuple[Path, int]:
    """A config.yml for ``ns-train --load-config``: the test edit again from the recon, long, paused at its start, with
    its viewer on 127.0.0.1 and a learning rate that changes the colour visibly within a few steps. Returns it and the
    viewer's port."""
    config, _ = edited
    live = copy.deepcopy(config)
    live.output_dir = tmp_path / "live"
    live.max_num_iterations = 100_000  # stopped by the test
    live.start_paused = True
    live.vis = "viewer"
    live.viewer.websocket_host = "127.0.0.1"
    live.viewer.websocket_port = _free_port()
    live.pipeline.model.identity_loss_mult = 0.0
    for group in live.optimizers.values():
        group["optimizer"].lr = 0.05
    live.set_timestamp()
    path = tmp_path / "live.yml"
    path.write_text(yaml.dump(live))
    return path, live.viewer.websocket_port


def _viewport(image: np.ndarray) -> np.ndarray:
    """The page without the control panel on its right (whose step counter and buttons change with training)."""
    return image[:, : image.shape[1] // 2]


def test_the_viewer_shows_the_edit_as_it_trains(live_edit, tmp_path):
    """Paused, the page holds still; resumed, the render changes as the colour trains (nerfstudio re-renders every
    few dozen steps), and paused again it keeps the change. Renders are compared with one taken while paused, so the
    render's own refinement or the camera's first move cannot pass for training."""
    from selenium.webdriver.common.by import By

    config, port = live_edit
    log = tmp_path / "train.log"
    command = [sys.executable, "-m", "nerfstudio.scripts.train", "avatarstudio-edit-fast", "--load-config", str(config)]
    with _serve(command, port, log) as (url, process), _browser() as driver:
        driver.get(url)

        def button(label: str):
            found = driver.find_elements(By.XPATH, f"//button[normalize-space()='{label}']")
            return found[0] if found else None

        _wait_for(lambda: button("Resume Training"), 300, "the viewer's Resume Training button")
        before = _viewport(_settled(driver))
        button("Resume Training").click()

        def changed():
            assert process.poll() is None, log.read_text()[-3000:]
            image = _viewport(_screenshot(driver))
            return image if np.abs(image - before).mean() > 2.0 else None

        _wait_for(changed, 300, "the render to follow the training")
        _wait_for(lambda: button("Pause Training"), 30, "the Pause Training button").click()
        after = _viewport(_settled(driver))
        assert np.abs(after - before).mean() > 2.0, "the paused render lost the training's change"

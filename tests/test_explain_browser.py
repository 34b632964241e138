"""The live page in a real browser: headless Chromium opens `explain.py --serve`, uploads a photo,
reads p_cat off the page, clicks a unit, switches it off, and reads p_cat again; both are
checked against the model in Python. Under CI a missing Chromium fails (.ci/run installs it).
"""

import base64
import copy
import re
from pathlib import Path

import pytest
import torch

from datasets import decode_image
from inference import load_model
from tests.browser import chromium, live_page, require_browser
from tests.conftest import SHARED_DATA
from tests.live_server import fetch, post_photo, running

SHARED_CAT = SHARED_DATA / "cats_and_dogs_filtered" / "validation" / "cats" / "cat.2000.jpg"
WAIT_S = 60


@pytest.fixture(scope="module")
def browser():
    require_browser()
    with chromium() as driver:
        yield driver


def wait_for_update(driver, after: int) -> float:
    """Wait until the page has drawn more than `after` answers; p_cat as the page shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def drawn(d):
        return int(d.find_element(By.ID, "p-cat").get_attribute("data-updates")) > after

    WebDriverWait(driver, WAIT_S).until(drawn)
    text = driver.find_element(By.ID, "p-cat").text  # "cat: p_cat = 0.823471"
    return float(re.search(r"p_cat = ([0-9.]+)", text).group(1))


def updates(driver) -> int:
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.ID, "p-cat").get_attribute("data-updates"))


def test_upload_click_a_unit_switch_it_off_and_p_cat_moves_as_in_python(browser, trained_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    photo = SHARED_CAT if SHARED_CAT.is_file() else trained_run.pets / "Cat" / "4.jpg"
    model = load_model(trained_run.best)
    image = decode_image(photo, model.image_size)
    with live_page("--ckpt", str(trained_run.best), samples=trained_run.pets, cwd=tmp_path) as url:
        browser.get(url)
        first = wait_for_update(browser, 0)  # the first sample photo is shown at once
        assert 0 <= first <= 1
        browser.find_element(By.ID, "file").send_keys(str(photo))
        p_cat = wait_for_update(browser, 1)
        with torch.inference_mode():
            expected = model(image.unsqueeze(0))[0].item()
        assert abs(p_cat - expected) <= 1e-6, (p_cat, expected)

        # The last hidden layer's strongest unit: its button, its panel, its switch.
        unit_button = browser.find_element(By.CSS_SELECTOR, 'section[data-layer="layer3"] button.unit-button')
        unit = int(unit_button.get_attribute("data-unit"))
        unit_button.click()
        switch = WebDriverWait(browser, WAIT_S).until(
            expected_conditions.element_to_be_clickable(
                (By.CSS_SELECTOR, f'section[data-layer="layer3"] button.switch[data-unit="{unit}"]')
            )
        )
        assert f"Unit #{unit} of layer3" in browser.find_element(By.CSS_SELECTOR, ".unit-title").text
        before = updates(browser)
        switch.click()
        switched_off = wait_for_update(browser, before)

        by_hand = copy.deepcopy(model)
        with torch.no_grad():
            by_hand.network.head.weight[:, unit] = 0  # the head no longer sees A3[unit]
            expected_off = by_hand(image.unsqueeze(0))[0].item()
        assert abs(switched_off - expected_off) <= 1e-6, (switched_off, expected_off)
        assert abs(switched_off - p_cat) > 1e-6  # the strongest unit mattered
        assert f"layer3: units #{unit} off" in browser.find_element(By.ID, "changes").text

        before = updates(browser)
        browser.find_element(By.ID, "reset").click()
        assert abs(wait_for_update(browser, before) - expected) <= 1e-6

        # Not a photo: a message on the page, and the last photo's numbers stay.
        text_file = Path(tmp_path) / "notes.jpg"
        text_file.write_text("not a photo at all")
        browser.find_element(By.ID, "file").send_keys(str(text_file))
        message = WebDriverWait(browser, WAIT_S).until(
            expected_conditions.visibility_of_element_located((By.ID, "message"))
        )
        assert "not a photo" in message.text


def test_the_page_explain_py_html_writes_draws_offline_and_opens_a_units_panel(
    browser, trained_run, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import explain

    photo, page = trained_run.pets / "Cat" / "4.jpg", tmp_path / "cat.html"
    assert explain.main(["--ckpt", str(trained_run.best), str(photo), "--html", str(page)]) == 0
    model = load_model(trained_run.best)
    with torch.inference_mode():
        expected = model(decode_image(photo, model.image_size).unsqueeze(0))[0].item()
    browser.get(page.as_uri())  # a file: no server behind it
    assert abs(wait_for_update(browser, 0) - expected) <= 1e-6
    unit_button = browser.find_element(By.CSS_SELECTOR, 'section[data-layer="layer3"] button.unit-button')
    unit = unit_button.get_attribute("data-unit")
    unit_button.click()
    title = WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".unit-title").text
    )
    assert f"Unit #{unit} of layer3" in title
    assert not browser.find_element(By.ID, "message").is_displayed()  # every answer came from the page


def test_a_page_on_another_origin_cannot_push_the_users_photo_out(browser, trained_run, tmp_path):
    """The attack as a browser makes it: a page on another port uploads 40 photos with
    fetch(..., {mode: "no-cors"}); the browser sends them with that page's Origin, and the server
    refuses each, so the user's own upload (the store keeps 32) is still there."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    photo = (trained_run.pets / "Cat" / "3.jpg").read_bytes()
    elsewhere = Starlette(routes=[Route("/", lambda _request: HTMLResponse("<p>another site</p>"))])
    attack = """
        const [target, photo, done] = arguments;
        const body = Uint8Array.from(atob(photo), (c) => c.charCodeAt(0));
        const sent = [];
        for (let k = 0; k < 40; k++) {
          sent.push(fetch(target + "api/photos", {method: "POST", mode: "no-cors", body: new Blob([body])}));
        }
        Promise.allSettled(sent).then((results) => done(results.map((r) => r.status)));
    """
    with live_page("--ckpt", str(trained_run.best), cwd=tmp_path) as url, running(elsewhere) as other:
        users_photo = post_photo(url.rstrip("/"), photo)
        browser.get(other + "/")
        outcomes = browser.execute_async_script(attack, url, base64.b64encode(photo).decode())
        status, answer = fetch(f"{url}api/explain", {"photo": users_photo})
    assert outcomes == ["fulfilled"] * 40  # the requests did reach the server (opaque answers)
    assert status == 200 and 0 <= answer["p_cat"] <= 1, answer


def test_the_networks_mistakes_among_the_samples_are_marked_and_open(
    browser, trained_run, mislabelled, tmp_path
):
    from selenium.webdriver.common.by import By

    with live_page("--ckpt", str(trained_run.best), samples=mislabelled, cwd=tmp_path) as url:
        browser.get(url)
        wait_for_update(browser, 0)
        mistakes = browser.find_elements(By.CSS_SELECTOR, "#mistakes button")
        assert mistakes and browser.find_element(By.ID, "mistakes-title").is_displayed()
        caption = mistakes[0].find_element(By.CSS_SELECTOR, ".mistake").text  # "mistake: dog, p_cat 0.93"
        label, shown = re.fullmatch(r"mistake: (cat|dog), p_cat ([0-9.]+)", caption).groups()
        before = updates(browser)
        mistakes[0].click()
        p_cat = wait_for_update(browser, before)
        assert abs(p_cat - float(shown)) <= 0.005 and (p_cat >= 0.5) != (label == "cat"), (caption, p_cat)

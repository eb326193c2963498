"""The page and /docs in a real headless Chromium, against a real server on the committed models.

Every test ends by checking what a user (or an auditor) would: no console errors, and no
request to any host but the server.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ..conftest import DATA_DIR

By = pytest.importorskip("selenium.webdriver.common.by").By
ActionChains = pytest.importorskip("selenium.webdriver").ActionChains
WebDriverWait = pytest.importorskip("selenium.webdriver.support.ui").WebDriverWait


def _open(browser: Any, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _form(browser: Any, task: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, f'form[data-task="{task}"]')


def _answer(form: Any, contains: str = "version") -> str:
    """The form's output once it holds an answer (or an error, which fails the caller)."""
    output = form.find_element(By.CSS_SELECTOR, "[data-output]")
    WebDriverWait(form.parent, 20).until(
        lambda _: contains in output.text or output.find_elements(By.CSS_SELECTOR, ".error")
    )
    text: str = output.text
    return text


def _assert_clean(browser: Any, server: Any) -> None:
    """No console error, and every request the page made went to the server itself."""
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert urls, "the performance log recorded no request"
    # chrome:// and devtools:// are the browser's own pages (some builds load them beside a tab),
    # never a request to another host.
    own = (server.url + "/", "data:", "blob:", "chrome://", "chrome-extension://", "devtools://")
    strays = [u for u in urls if not u.startswith(own)]
    assert strays == []


@pytest.fixture
def page(browser: Any, server: Any) -> Any:
    browser.get_log("browser")  # start each test with empty logs
    browser.get_log("performance")
    _open(browser, server.url + "/")
    return browser


def test_every_text_and_housing_form_answers_with_model_version_and_latency(page, server):
    answers = {}
    for task in ("sentiment", "topics", "housing"):
        form = _form(page, task)
        form.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
        answers[task] = _answer(form)

    assert answers["sentiment"].startswith("Positive")
    assert (
        "imdb · version 1 · " in answers["sentiment"] and " ms round trip" in answers["sentiment"]
    )
    assert "superb" in answers["sentiment"].split("Pushed up:")[1].split("\n")[0]
    assert answers["topics"].startswith("earn") and "reuters · version 1" in answers["topics"]
    assert answers["housing"].startswith("$") and "housing · version 1" in answers["housing"]
    price = float(answers["housing"].split("\n")[0].strip("$").replace(",", ""))
    assert 10_000 < price < 30_000  # the prefilled test house sold for $18,800
    _assert_clean(page, server)


def test_a_one_drawn_with_the_mouse_is_read_as_one(page, server):
    form = _form(page, "digits")
    canvas = form.find_element(By.CSS_SELECTOR, "canvas")
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)

    stroke = (
        ActionChains(page, duration=10).move_to_element_with_offset(canvas, 6, -95).click_and_hold()
    )
    for _ in range(19):  # a slightly slanted stroke, top to bottom
        stroke.move_by_offset(-0.6, 10)
    stroke.release().perform()  # lifting the pen submits

    answer = _answer(form)
    assert answer.split("\n")[0] == "1"
    seen = form.find_element(By.CSS_SELECTOR, "canvas.seen")
    assert seen.get_attribute("width") == "28"
    _assert_clean(page, server)


@pytest.mark.skipif(DATA_DIR is None, reason="needs the MNIST test set (../shared/datasets)")
def test_an_uploaded_mnist_test_image_is_read_right(page, server, tmp_png):
    with np.load(DATA_DIR / "mnist.npz") as mnist:
        image, label = mnist["x_test"][0], int(mnist["y_test"][0])
    Image.fromarray(image).save(tmp_png)
    form = _form(page, "digits")

    form.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(tmp_png))

    answer = _answer(form)
    assert answer.split("\n")[0] == str(label)
    shown = page.execute_script(
        "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;"
        "return Array.from({length: 784}, (_, i) => d[4 * i]);",
        form.find_element(By.CSS_SELECTOR, "canvas.seen"),
    )
    assert np.array_equal(np.asarray(shown).reshape(28, 28), image), "a 28×28 upload is unchanged"
    _assert_clean(page, server)


def test_words_sent_are_shown_as_text_never_as_html(page, server):
    form = _form(page, "sentiment")
    textarea = form.find_element(By.CSS_SELECTOR, 'textarea[name="text"]')
    textarea.clear()
    hostile = 'a great film <img src=x onerror="document.title=1"> <b>bold</b>'
    textarea.send_keys(hostile)

    form.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    _answer(form)

    words = form.find_element(By.CSS_SELECTOR, ".words")
    assert words.text == hostile
    assert words.find_elements(By.CSS_SELECTOR, "img, b") == []
    assert page.title != "1"
    _assert_clean(page, server)


def test_the_models_section_lists_each_served_model_with_its_curves(page, server):
    section = page.find_element(By.CSS_SELECTOR, "[data-models]")
    WebDriverWait(page, 20).until(lambda _: len(section.find_elements(By.TAG_NAME, "img")) == 4)
    page.execute_script("arguments[0].scrollIntoView()", section)

    text = section.text
    for name in ("housing", "imdb", "mnist", "reuters"):
        assert f"{name} · version 1" in text
    assert "(book: 0.885)" in text and "(book: 2.55)" in text
    WebDriverWait(page, 20).until(
        lambda d: d.execute_script(
            "return [...arguments[0].querySelectorAll('img')].every(i => i.naturalWidth > 0)",
            section,
        )
    )
    _assert_clean(page, server)


def test_docs_renders_every_route_offline(browser, server):
    import httpx

    spec = httpx.get(f"{server.url}/openapi.json").json()
    expected = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    browser.get_log("browser")
    browser.get_log("performance")

    _open(browser, f"{server.url}/docs")
    WebDriverWait(browser, 30).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected)
    )

    shown = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert shown == expected
    _assert_clean(browser, server)

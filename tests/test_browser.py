"""The offline attention viewer in a real browser: headless Chromium, and no network.

Every HTML page the project writes that can render offline is opened here: the viewer
built from a small GPT's patterns, the ``pictures --html`` command's
attention_viewer.html and the ``explain`` command's report.html. bertviz's pages
(bertviz_*_view.html) are out of scope: they load require.js, d3 and jQuery from a
CDN, so they cannot render offline.

The tests skip when Chromium or Playwright is missing, and fail instead when
GPTDECODER_REQUIRE_BROWSER is set (.ci/run sets it); see browser_helpers.py.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from browser_helpers import REQUIRE_BROWSER, OfflinePage, browser_missing, chromium, open_offline
from conftest import tiny_model
from lab_runs import write_untrained_run

from gptdecoder.storage import write_atomic
from gptdecoder.lab import views
from gptdecoder.lab.capture import as_layer_head_array, capture_attention, token_labels

SYMBOLS = ["a", "b", "c", "&amp;", "</script>"]  # hostile labels must show as text
IDS = [0, 2, 1, 4, 3, 0, 1, 2, 3]
T = len(IDS)
BOUNDARY = 5  # the answer starts at position 5
LEAK = (1, 1, 0, 6)  # layer, head, query, key of the planted leak


def small_gpt_patterns() -> list[torch.Tensor]:
    """Real patterns of a small untrained GPT, as capture_attention returns them."""
    model = tiny_model(vocab_size=5, block_size=12)
    return capture_attention(model, torch.tensor([IDS]))


CAPTURED = small_gpt_patterns()
PATTERNS: np.ndarray = as_layer_head_array(CAPTURED)  # [layer, head, query, key]
TOKENS = token_labels(IDS, SYMBOLS)


def stored(w: float) -> float:
    """A weight as the page stores and shows it (the documented rounding)."""
    return float(views.round_weight(w))


def shown_weight(info: str) -> float:
    """The number after "weight" in the info line."""
    match = re.search(r"weight (\S+)", info)
    assert match, f"no weight in the info line {info!r}"
    return float(match.group(1))


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """The viewer for the small GPT, and the same with a tiny leak planted above the diagonal."""
    out = tmp_path_factory.mktemp("viewer")
    leaky = PATTERNS.copy()
    leaky[LEAK] = 3e-9
    return {
        "small": write_atomic(out / "small.html", views.attention_viewer_html(
            CAPTURED, TOKENS, title="small GPT", boundary=BOUNDARY)),
        "leaky": write_atomic(out / "leaky.html", views.attention_viewer_html(
            torch.from_numpy(leaky), TOKENS, title="leaky mask", boundary=BOUNDARY)),
    }


@contextmanager
def opened(browser, path: Path) -> Iterator[OfflinePage]:
    page = open_offline(browser, path)
    try:
        yield page
    finally:
        page.page.context.close()


@pytest.fixture
def viewer(browser, pages) -> Iterator[OfflinePage]:
    with opened(browser, pages["small"]) as page:
        yield page


@pytest.fixture
def leaky_viewer(browser, pages) -> Iterator[OfflinePage]:
    with opened(browser, pages["leaky"]) as page:
        yield page


# -- reading the page --------------------------------------------------------------------------


def cell_colours(page) -> list[str]:
    return page.eval_on_selector_all("#grid td", "tds => tds.map(td => td.style.background)")


def head_view_svg(page) -> str:
    return page.inner_html("#head-svg")


def visible_views(page) -> list[str]:
    return [view for view in ("matrix", "head", "model") if page.is_visible(f"#view-{view}")]


def hover_cell(page, q: int, k: int) -> str:
    page.hover(f'#grid td[data-q="{q}"][data-k="{k}"]')
    return page.inner_text("#info")


RED_PIXELS_IN_COLUMN = """([layer, head, x]) => {
  const canvas = document.querySelector(`canvas[data-layer="${layer}"][data-head="${head}"]`);
  const px = canvas.getContext("2d").getImageData(x, 0, 1, canvas.height).data;
  let red = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] > 150 && px[i + 1] < 90 && px[i + 2] < 90) red++;
  return red;
}"""

NON_WHITE_PIXELS = """canvas => {
  const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] < 250 || px[i + 1] < 250) drawn++;
  return drawn;
}"""


def assert_offline_and_clean(opened_page: OfflinePage) -> None:
    assert opened_page.console_errors == []
    assert opened_page.network_requests() == []


def assert_three_views_render(page, n_layer: int, n_head: int, n_tokens: int) -> None:
    """Each tab shows its view, and each view has drawn something."""
    page.click("#tab-matrix")
    assert visible_views(page) == ["matrix"]
    assert page.locator("#grid td").count() == n_tokens * n_tokens
    page.click("#tab-head")
    assert visible_views(page) == ["head"]
    assert page.locator("#head-svg text.tok").count() == 2 * n_tokens
    assert page.locator("#head-svg line.attn").count() > 0
    page.click("#tab-model")
    assert visible_views(page) == ["model"]
    canvases = page.locator("#model-grid canvas")
    assert canvases.count() == n_layer * n_head
    assert all(canvases.nth(i).evaluate(NON_WHITE_PIXELS) > 0 for i in range(canvases.count()))


# -- the viewer of a small GPT -----------------------------------------------------------------


def test_viewer_opens_offline_without_errors(viewer):
    page = viewer.page
    assert_offline_and_clean(viewer)
    assert visible_views(page) == ["matrix"]
    assert page.input_value("#layer") == "0" and page.input_value("#head") == "0"
    headers = page.eval_on_selector_all("#grid thead th", "ths => ths.map(th => th.textContent)")
    assert headers[1:] == [f"{i} {tok}" for i, tok in enumerate(TOKENS)]  # "</script>" and "&amp;" as text
    assert "3 significant digits" in page.inner_text("#rounding")
    assert page.get_attribute("#causal-check", "class") == "pass"


def test_each_view_renders(viewer):
    page = viewer.page
    assert_three_views_render(page, n_layer=2, n_head=2, n_tokens=T)
    # the head view draws one line per nonzero weight of the selected head (exact zeros are left out)
    page.click("#tab-head")
    nonzero = sum(stored(w) != 0 for w in PATTERNS[0, 0].ravel())
    assert page.locator("#head-svg line.attn").count() == nonzero
    assert_offline_and_clean(viewer)


def test_switching_layer_and_head_changes_the_drawing(viewer):
    page = viewer.page
    first = cell_colours(page)
    page.select_option("#layer", "1")
    second_layer = cell_colours(page)
    page.select_option("#head", "1")
    second_head = cell_colours(page)
    assert first != second_layer != second_head != first
    assert page.inner_text("#matrix-caption").startswith("Layer 1, head 1")
    page.select_option("#head", "all")
    assert page.inner_text("#matrix-caption").startswith("Layer 1, mean of heads 0, 1")
    assert cell_colours(page) not in (second_layer, second_head)

    page.click("#tab-head")  # the selection is shared: all heads of layer 1, ticked
    assert page.is_checked("#head-box-0") and page.is_checked("#head-box-1")
    both = head_view_svg(page)
    page.uncheck("#head-box-0")
    assert page.input_value("#head") == "1" and head_view_svg(page) != both
    only_head_1 = head_view_svg(page)
    page.select_option("#layer", "0")
    assert head_view_svg(page) != only_head_1
    colours = set(page.eval_on_selector_all("#head-svg line.attn", "ls => ls.map(l => l.getAttribute('stroke'))"))
    assert len(colours) == 1  # one head shown: one colour
    page.click("#head-boxes button:text('all')")
    colours = set(page.eval_on_selector_all("#head-svg line.attn", "ls => ls.map(l => l.getAttribute('stroke'))"))
    assert len(colours) == 2  # one colour per head
    page.click("#head-boxes button:text('none')")
    assert page.locator("#head-svg line.attn").count() == 0 and page.input_value("#head") == "some"
    page.click("#tab-matrix")
    assert page.inner_text("#matrix-caption").startswith("Layer 0, no head")
    assert page.locator("#grid td").count() == 0
    assert_offline_and_clean(viewer)


def test_matrix_hover_shows_the_rounded_weight(viewer):
    page = viewer.page
    page.select_option("#layer", "1")
    page.select_option("#head", "1")
    info = hover_cell(page, 7, 3)
    assert f'query 7 "{TOKENS[7]}" -> key 3 "{TOKENS[3]}"' in info  # token 3 is "</script>"
    assert shown_weight(info) == stored(PATTERNS[1, 1, 7, 3])
    info = hover_cell(page, 2, 6)  # above the diagonal: an exact 0, and said to be
    assert shown_weight(info) == 0 and "must be 0" in info
    page.select_option("#head", "all")  # the mean of the stored weights, rounded the same way
    mean = (stored(PATTERNS[1, 0, 8, 4]) + stored(PATTERNS[1, 1, 8, 4])) / 2
    assert shown_weight(hover_cell(page, 8, 4)) == pytest.approx(float(f"{mean:.3g}"))


def test_head_view_hover_shows_weights_and_highlights_a_token(viewer):
    page = viewer.page
    page.click("#tab-head")
    page.select_option("#layer", "1")
    page.select_option("#head", "all")
    page.dispatch_event('#head-svg line[data-h="1"][data-q="6"][data-k="2"]', "mouseover")
    info = page.inner_text("#info")
    assert info.startswith(f'layer 1, head 1: query 6 "{TOKENS[6]}" -> key 2 "{TOKENS[2]}"')
    assert shown_weight(info) == stored(PATTERNS[1, 1, 6, 2])

    page.hover('#head-svg text.tok[data-side="q"][data-i="6"]')
    assert page.inner_text("#info").startswith(f'layer 1: query 6 "{TOKENS[6]}" attends to')
    listed = page.inner_text("#head-weights").splitlines()
    assert listed[0].startswith(f'query 6 "{TOKENS[6]}" attends to')
    for head in (0, 1):  # one line per head: its weights from query 6, key 0 first
        line = listed[1 + head]
        assert line.startswith(f"head {head}: ")
        assert float(re.search(f'0 "{TOKENS[0]}" (\\S+?),', line).group(1)) == stored(PATTERNS[1, head, 6, 0])
    shown = page.eval_on_selector_all(
        "#head-svg line.attn", "ls => ls.filter(l => getComputedStyle(l).display !== 'none').map(l => l.dataset.q)")
    assert shown and set(shown) == {"6"}  # only the hovered query's lines stay
    page.mouse.move(1, 1)
    assert page.locator("#head-svg.focus").count() == 0 and page.inner_text("#head-weights") == ""


def test_model_thumbnail_click_opens_it_in_the_matrix_view(viewer):
    page = viewer.page
    page.select_option("#layer", "1")
    page.select_option("#head", "1")
    by_selectors = cell_colours(page)
    page.select_option("#layer", "0")
    page.select_option("#head", "0")

    page.click("#tab-model")
    thumbnail = page.locator('#model-grid canvas[data-layer="1"][data-head="1"]')
    side = thumbnail.bounding_box()["width"] - 2  # the CSS size without the 1px border
    q, k = 7, 3
    thumbnail.hover(position={"x": (k + 0.5) * side / T, "y": (q + 0.5) * side / T})
    info = page.inner_text("#info")
    assert info.startswith(f'layer 1, head 1: query 7 "{TOKENS[7]}" -> key 3')
    assert shown_weight(info) == stored(PATTERNS[1, 1, q, k])

    thumbnail.click()
    assert visible_views(page) == ["matrix"]
    assert page.input_value("#layer") == "1" and page.input_value("#head") == "1"
    assert cell_colours(page) == by_selectors
    page.click("#tab-model")
    selected = page.eval_on_selector_all("#model-grid canvas.selected",
                                         "cs => cs.map(c => [c.dataset.layer, c.dataset.head])")
    assert selected == [["1", "1"]]


def test_boundary_is_marked_in_every_view(viewer):
    page = viewer.page
    assert f"answer starts (position {BOUNDARY})" in page.inner_text("body")
    columns = page.eval_on_selector_all("#grid td.boundary-col", "tds => tds.map(td => td.dataset.k)")
    rows = page.eval_on_selector_all("#grid td.boundary-row", "tds => tds.map(td => td.dataset.q)")
    assert columns == [str(BOUNDARY)] * T and rows == [str(BOUNDARY)] * T
    style = page.eval_on_selector("#grid td.boundary-col", "td => getComputedStyle(td).borderLeftStyle")
    assert style == "dashed"

    page.click("#tab-head")  # one dashed line between the last prompt token and the first answer token
    line_y = float(page.get_attribute("#head-svg line.boundary", "y1"))
    token_y = [float(page.get_attribute(f'#head-svg text.tok[data-side="q"][data-i="{i}"]', "y"))
               for i in (BOUNDARY - 1, BOUNDARY)]
    assert token_y[0] - 12 < line_y < token_y[1] - 12  # text y is the baseline: the row's top is ~12px up
    assert page.get_attribute("#head-svg line.boundary", "stroke-dasharray")

    page.click("#tab-model")  # a red line down every thumbnail at the boundary's column
    width = page.eval_on_selector("#model-grid canvas", "c => c.width")
    x = round(BOUNDARY * width / T)
    for layer in (0, 1):
        for head in (0, 1):
            red = page.evaluate(RED_PIXELS_IN_COLUMN, [layer, head, x - 1])
            red += page.evaluate(RED_PIXELS_IN_COLUMN, [layer, head, x])
            assert red > width // 4


def test_a_tiny_leak_above_the_diagonal_stays_visible(leaky_viewer):
    page = leaky_viewer.page
    layer, head, q, k = LEAK
    check = page.inner_text("#causal-check")
    assert page.get_attribute("#causal-check", "class") == "fail"
    assert "1 nonzero weight(s)" in check and f"layer {layer}, head {head}, query {q} -> key {k}: 3e-9" in check

    page.select_option("#layer", str(layer))
    page.select_option("#head", str(head))
    assert page.eval_on_selector_all("#grid td.leak", "tds => tds.map(td => [td.dataset.q, td.dataset.k])") \
        == [[str(q), str(k)]]
    assert shown_weight(hover_cell(page, q, k)) == 3e-9

    page.click("#tab-head")  # drawn dashed and visible, although its weight is tiny
    leak_line = f'#head-svg line.leak[data-h="{head}"][data-q="{q}"][data-k="{k}"]'
    assert float(page.get_attribute(leak_line, "stroke-opacity")) >= 0.5
    page.click("#tab-model")  # a red cell in the thumbnail
    width = page.eval_on_selector("#model-grid canvas", "c => c.width")
    assert page.evaluate(RED_PIXELS_IN_COLUMN, [layer, head, int((k + 0.5) * width / T)]) > 0
    assert page.evaluate(RED_PIXELS_IN_COLUMN, [0, 0, int((k + 0.5) * width / T)]) == 0
    assert_offline_and_clean(leaky_viewer)


# -- every offline page the pictures command writes --------------------------------------------


def test_pictures_command_pages_render_offline(browser, tmp_path):
    from gptdecoder.commands.pictures import render_run_images

    run = write_untrained_run(tmp_path / "sort")
    paths = render_run_images(run, tmp_path / "pics", ablation_examples=20, html_views=True)
    # bertviz's pages load their JavaScript from a CDN: they cannot render offline
    offline = [p for p in paths if p.suffix == ".html" and not p.name.startswith("bertviz_")]
    assert [p.name for p in offline] == ["attention_viewer.html"]
    for path in offline:
        with opened(browser, path) as page:
            tokens = page.page.locator("#grid tbody tr").count()
            assert tokens > 0
            assert_three_views_render(page.page, n_layer=2, n_head=2, n_tokens=tokens)
            page.page.click('#model-grid canvas[data-layer="1"][data-head="0"]')
            assert visible_views(page.page) == ["matrix"] and page.page.input_value("#layer") == "1"
            assert page.page.locator("#grid td.boundary-col").count() == tokens
            assert_offline_and_clean(page)


def test_explain_report_renders_offline(browser, tmp_path):
    """report.html is one page: every figure is an embedded image that decodes, nothing is fetched."""
    from gptdecoder import cli

    run = write_untrained_run(tmp_path / "sort")
    assert cli.main(["explain", "--run", str(run), "--examples", "20"]) == 0
    with opened(browser, run / "explain" / "report.html") as page:
        images = page.page.eval_on_selector_all(
            "img", "imgs => imgs.map(img => [img.complete && img.naturalWidth > 0, img.src.slice(0, 22)])")
        assert images == [[True, "data:image/png;base64,"]] * 6  # the circuit's figure too
        assert page.page.locator("h2").count() == 8
        assert page.page.locator("ul li").count() >= 2  # the plain-words sentences
        assert_offline_and_clean(page)


# -- the skip-or-fail rule itself (no browser needed) ------------------------------------------


def test_missing_browser_skips_locally_and_fails_when_required(monkeypatch):
    monkeypatch.delenv(REQUIRE_BROWSER, raising=False)
    with pytest.raises(pytest.skip.Exception):
        browser_missing("no browser here")
    monkeypatch.setenv("GPTDECODER_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.skip.Exception):
        with chromium():
            pass
    monkeypatch.setenv(REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception):
        with chromium():
            pass

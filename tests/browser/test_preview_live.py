"""The live preview in a real browser against a real farm (server + one local node + Blender):
a tiled still's card shows the frame growing chunk by chunk, and a click opens it larger in a
dialog that Esc closes. The dialog is screenshotted into docs/img/preview.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

RENDER_TIMEOUT = 180_000
TILES = 3


def card(ui, title: str):
    return ui.page.locator("li.project").filter(
        has=ui.page.get_by_role("heading", name=title, exact=True)
    )


def submit(farm, zip_path, title: str, tiles: int) -> dict:
    with farm.client() as client, open(zip_path, "rb") as fh:
        answer = client.post(
            "/api/projects",
            files={"file": (zip_path.name, fh, "application/zip")},
            data={"blend": "scene.blend", "title": title, "frame_start": "1",
                  "frame_end": "1", "animation": "false", "tiles": str(tiles)},
        )  # fmt: skip
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_the_card_shows_the_frame_growing_and_opens_it_larger(ui, farm, scenes) -> None:
    page = ui.page
    ui.goto()
    # note every picture the card's thumbnail shows, with its size, as it changes (a newer
    # picture is loaded before it replaces the one shown)
    page.evaluate(
        """() => {
        window.__pictures = [];
        const seen = () => {
          for (const img of document.querySelectorAll('#projects .thumb img')) {
            if (window.__pictures.at(-1)?.src === img.src) continue;
            window.__pictures.push({src: img.src, w: img.naturalWidth, h: img.naturalHeight});
          }
        };
        new MutationObserver(seen).observe(document.getElementById('projects'),
          {subtree: true, childList: true});
        document.getElementById('projects').addEventListener('load', seen, true);
      }"""
    )
    project = submit(farm, scenes["slow"], "Growing still", TILES)
    item = card(ui, "Growing still")
    expect(item).to_be_visible()
    thumb = item.locator(".thumb")
    expect(thumb).to_have_class(re.compile(r"\bthumb-live\b"), timeout=RENDER_TIMEOUT)
    expect(thumb.locator("img")).to_have_attribute("src", re.compile(r"/preview\?v="))

    # the card's picture changes while the still renders, before it is done
    page.wait_for_function(
        "new Set(window.__pictures.map(p => p.src).filter(s => s.includes('/preview'))).size > 1",
        timeout=RENDER_TIMEOUT,
    )
    pictures = page.evaluate("window.__pictures")
    shown = [p for p in pictures if "/preview" in p["src"] and p["w"]]
    assert shown and all((p["w"], p["h"]) == (201, 151) for p in shown), pictures

    # a click opens the larger view: the frame, its chunks in, updating while it renders
    item.get_by_role("button", name="Open a larger preview of Growing still").click()
    dialog = page.get_by_role("dialog", name="Preview of “Growing still”")
    expect(dialog).to_be_visible()
    caption = dialog.locator("figcaption")
    expect(caption).to_contain_text(re.compile(rf"Frame 1 · \d / {TILES * TILES} chunks in"))
    big = dialog.get_by_role("img", name=re.compile("Frame 1 of “Growing still”"))
    expect(big).to_be_visible()
    loaded = "img => img.complete && img.naturalWidth === 201"
    page.wait_for_function(loaded, arg=big.element_handle())
    ui.screenshot("preview.png")
    every = f"{TILES * TILES} / {TILES * TILES} chunks in"
    expect(caption).to_contain_text(every, timeout=RENDER_TIMEOUT)

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(item).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT)
    # once done, the card shows the stitched frame's thumbnail again
    expect(thumb.locator("img")).to_have_attribute("src", re.compile(r"/thumbnail\?v="))
    expect(thumb).not_to_have_class(re.compile(r"\bthumb-live\b"))
    with farm.client() as client:
        final = client.get(f"/api/projects/{project['id']}/preview")
    assert final.headers["x-preview-chunks"] == f"{TILES * TILES}/{TILES * TILES}"
    ui.console.assert_clean()

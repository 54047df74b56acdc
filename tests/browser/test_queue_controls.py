"""The dashboard's queue controls in a real browser against a real farm (server + one local
node + Blender): priority, pause and resume, cancel and retry, render a frame again, the ETA
and frame-time chart, and a worker disabled and enabled by the admin."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

RENDER_TIMEOUT = 180_000


def card(ui, title: str):
    return ui.page.locator("li.project").filter(
        has=ui.page.get_by_role("heading", name=title, exact=True)
    )


def submit(farm, zip_path, title: str, **fields: str) -> dict:
    with farm.client() as client, open(zip_path, "rb") as fh:
        answer = client.post(
            "/api/projects",
            files={"file": (zip_path.name, fh, "application/zip")},
            data={"blend": "scene.blend", "title": title, **fields},
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


def project(farm, pid: str) -> dict:
    with farm.client() as client:
        return client.get(f"/api/projects/{pid}").json()


def own(ui, answer: dict) -> None:
    """This browser keeps the project's owner key, as if it had uploaded it."""
    keys = json.dumps({answer["id"]: answer["owner_key"]})
    ui.page.evaluate(f"localStorage.setItem('blendfarm-owner-keys', {json.dumps(keys)})")


def toast(ui, text: str):
    return ui.page.get_by_role("status").filter(has_text=text)


def test_the_owner_steers_a_project_from_its_card(ui, farm, scenes) -> None:
    page = ui.page
    answer = submit(farm, scenes["quick"], "Steered", frame_start="1", frame_end="2",
                    tiles="2", paused="true")  # fmt: skip
    pid = answer["id"]
    ui.goto()
    own(ui, answer)
    ui.goto()
    item = card(ui, "Steered")
    expect(item).to_have_attribute("data-state", "paused")
    expect(item.locator(".badge")).to_have_text("Paused")
    expect(item.locator(".project-waiting")).to_contain_text("paused")

    item.get_by_label("Priority of Steered", exact=True).fill("80")
    item.get_by_role("button", name="Set priority of Steered").click()
    expect(toast(ui, "Priority of “Steered” is 80")).to_be_visible()
    assert project(farm, pid)["priority"] == 80

    page.once("dialog", lambda d: d.accept())
    item.get_by_role("button", name="Cancel Steered").click()
    expect(item).to_have_attribute("data-state", "cancelled")
    item.get_by_role("button", name="Retry Steered").click()
    expect(item).not_to_have_attribute("data-state", "cancelled")
    item.get_by_role("button", name="Pause Steered").click()
    expect(item).to_have_attribute("data-state", "paused")
    item.get_by_role("button", name="Resume Steered").click()
    expect(item).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT)

    expect(page.locator("#home-summary")).to_contain_text("chunks in the last hour")
    chart = item.get_by_role("img", name=re.compile("Render time per frame: frame 1: .*frame 2"))
    expect(chart).to_be_visible()
    item.get_by_label("Frame of Steered to render again", exact=True).fill("2")
    item.get_by_role("button", name="Render frame again: Steered").click()
    expect(toast(ui, "Frame 2: 4 chunk(s) queued again")).to_be_visible()
    expect(item).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT)
    ui.screenshot("queue-controls.png")
    ui.console.assert_clean()


def test_another_browser_needs_the_admin_password_for_the_controls(ui, farm, scenes) -> None:
    page = ui.page
    answer = submit(farm, scenes["quick"], "Not mine", frame_start="1", frame_end="1",
                    paused="true")  # fmt: skip
    ui.goto()
    item = card(ui, "Not mine")
    expect(item).to_have_attribute("data-state", "paused")
    ui.console.allow(r"status of 403 .*\[.*/api/projects/")
    page.once("dialog", lambda d: d.accept("wrong password"))
    item.get_by_role("button", name="Resume Not mine").click()
    refused = page.get_by_role("alert").filter(has_text="Could not change “Not mine”")
    expect(refused).to_contain_text("wrong admin password")
    assert project(farm, answer["id"])["state"] == "paused"
    page.once("dialog", lambda d: d.accept(farm.password))
    item.get_by_role("button", name="Resume Not mine").click()
    expect(item).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT)
    ui.console.assert_clean()


def test_the_admin_disables_and_enables_a_worker(ui, farm, scenes) -> None:
    page = ui.page
    ui.goto("workers")
    node = page.locator("li.node").first
    with farm.client() as client:
        name = client.get("/api/nodes").json()[0]["name"]
    page.once("dialog", lambda d: d.accept(farm.password))
    node.get_by_role("button", name=f"Disable {name}").click()
    expect(node.locator(".badge")).to_have_text("Disabled")
    answer = submit(farm, scenes["quick"], "Waits", frame_start="1", frame_end="1")
    page.wait_for_timeout(1500)  # the node asks for work meanwhile and gets none
    assert project(farm, answer["id"])["chunks_done"] == 0
    assert project(farm, answer["id"])["state"] == "queued"
    page.once("dialog", lambda d: d.accept(farm.password))
    node.get_by_role("button", name=f"Enable {name}").click()
    ui.goto()
    expect(card(ui, "Waits")).to_have_attribute("data-state", "done", timeout=RENDER_TIMEOUT)
    ui.console.assert_clean()

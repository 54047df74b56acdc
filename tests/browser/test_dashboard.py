"""The dashboard in a real browser against a real farm (server + one local node + Blender).

The tests share one farm and run in file order: upload and render, workers, delete, form
validation, purge. Each page is screenshotted into docs/img/ (or $BLENDFARM_SCREENSHOTS).
"""

from __future__ import annotations

import io
import re
import time
import zipfile

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

RENDER_TIMEOUT = 120_000
SEED_LABELS = [
    "Blender file to be rendered",
    "Title",
    "Animation",
    "Frame to render",
    "Split image into x by x chunks",
    "Overscan",
]


def card(ui, title: str):
    return ui.page.locator("li.project").filter(
        has=ui.page.get_by_role("heading", name=title, exact=True)
    )


def submit_via_api(farm, zip_path, title: str, frame: int = 1, tiles: int = 2) -> dict:
    with farm.client() as client, open(zip_path, "rb") as fh:
        answer = client.post(
            "/api/projects",
            files={"file": (zip_path.name, fh, "application/zip")},
            data={
                "blend": "scene.blend",
                "title": title,
                "animation": "false",
                "frame_start": str(frame),
                "frame_end": str(frame),
                "tiles": str(tiles),
                "overscan": "0",
            },
        )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_upload_form_renders_live_to_finished_result(ui, farm, scenes) -> None:
    page = ui.page
    ui.goto()
    expect(page.get_by_text("No projects yet.")).to_be_visible()
    page.evaluate("window.__notReloaded = true")

    page.get_by_role("link", name="Upload", exact=True).click()
    expect(page.get_by_role("heading", name="Upload a project")).to_be_focused()
    for label in SEED_LABELS:
        expect(page.get_by_label(label, exact=True)).to_have_count(1)
    expect(page.get_by_role("button", name="Submit")).to_be_visible()

    # the zip's .blend files are listed before anything is uploaded
    page.get_by_label("Project file").set_input_files(scenes["quick"])
    select = page.get_by_label("Blender file to be rendered")
    expect(select.locator("option")).to_have_text(["scene.blend", "lib/lib.blend"])
    expect(select).to_have_value("scene.blend")
    expect(page.get_by_label("Title")).to_have_value("quick")

    # the animation checkbox swaps the frame field for a range
    page.get_by_label("Animation", exact=True).check()
    expect(page.get_by_label("Frame to render")).to_be_hidden()
    expect(page.get_by_label("Animation start frame")).to_be_visible()
    expect(page.get_by_label("End frame of animation")).to_be_visible()
    page.get_by_label("Animation", exact=True).uncheck()

    page.get_by_label("Title").fill("Checker still")
    page.get_by_label("Frame to render").fill("1")
    page.get_by_label("Split image into x by x chunks").fill("2")
    page.get_by_label("Overscan").fill("0")
    expect(page.get_by_label("Denoise and composite whole frames")).to_have_value("auto")
    ui.screenshot("upload.png")

    # record every state the project card goes through, to prove it updates by itself
    page.evaluate(
        """() => {
        window.__states = [];
        window.__chunks = [];
        const seen = () => {
          for (const li of document.querySelectorAll('li.project')) {
            const s = li.dataset.state, c = li.querySelector('.chunks')?.textContent;
            if (s && window.__states.at(-1) !== s) window.__states.push(s);
            if (c && window.__chunks.at(-1) !== c) window.__chunks.push(c);
          }
        };
        new MutationObserver(seen).observe(document.getElementById('projects'),
          {subtree: true, childList: true, characterData: true, attributes: true});
      }"""
    )
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status").filter(has_text="Uploaded “Checker still”")).to_be_visible()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    item = card(ui, "Checker still")
    expect(item).to_be_visible()

    result = item.get_by_role("link", name="Finished Result", exact=True)
    expect(result).to_be_visible(timeout=RENDER_TIMEOUT)
    raw = item.get_by_role("link", name="Raw Frames", exact=True)
    expect(raw).to_be_visible()
    assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
    states = page.evaluate("window.__states")
    assert states[-1] == "done" and len(states) >= 2, states
    expect(item).to_have_class(re.compile(r"\bis-done\b"))
    expect(item.get_by_text("4 / 4 chunks done")).to_be_visible()
    chunks = page.evaluate("window.__chunks")
    assert len(chunks) >= 2, chunks  # the progress text changed while we watched

    # the links are absolute URLs on the API; the result is a PNG, raw frames a zip of chunks
    result_url = result.get_attribute("href")
    raw_url = raw.get_attribute("href")
    assert result_url.startswith(farm.api + "/api/projects/"), result_url
    assert result.get_attribute("target") == "_blank"
    with farm.client() as client:
        png = client.get(result_url)
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
        zipped = client.get(raw_url)
        assert zipped.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(zipped.content)).namelist()
    pid = result_url.split("/")[-2]
    assert sorted(names) == [f"{pid}-1-{r}-{c}.png" for r in range(2) for c in range(2)]
    # this browser uploaded it, so it holds the project's owner key (delete needs no password)
    assert pid in page.evaluate("JSON.parse(localStorage.getItem('blendfarm-owner-keys'))")

    # the thumbnail of the stitched frame is shown
    thumb = item.locator(".thumb img")
    expect(thumb).to_be_visible()
    loaded = "img => img.complete && img.naturalWidth > 0"
    page.wait_for_function(loaded, arg=thumb.element_handle())

    # the result opens in the browser, in a new tab
    with page.context.expect_page() as new_tab:
        result.click()
    tab = new_tab.value
    tab.wait_for_load_state()
    assert tab.url == result_url
    tab.close()

    ui.screenshot("home.png")
    ui.console.assert_clean()


def test_workers_page_shows_the_running_chunk(ui, farm, scenes) -> None:
    page = ui.page
    project = submit_via_api(farm, scenes["slow"], "Slow still", tiles=2)
    ui.goto("workers")
    nodes = page.locator("li.node")
    expect(nodes).to_have_count(1)
    node = nodes.first
    with farm.client() as client:
        name = client.get("/api/nodes").json()[0]["name"]
    expect(node.get_by_role("heading", name=name)).to_be_visible()
    expect(node.get_by_text("Blender", exact=True)).to_be_visible()
    expect(node.locator(".node-slots")).to_have_text("CPU")  # no GPU on the test machines

    # while it renders: project, frame and chunk
    expect(node.locator(".node-now")).to_contain_text(
        re.compile(r"Rendering Slow still · frame 1 · chunk row [01], column [01]"), timeout=60_000
    )
    chunks_done = node.locator(".node-chunks-done")
    done_before = chunks_done.inner_text()
    ui.screenshot("workers.png")

    # chunks done grows live
    expect(chunks_done).not_to_have_text(done_before, timeout=60_000)

    # the log: last lines, expandable to the full recent log
    expect(node.locator("pre.log-short")).not_to_have_text("(no log yet)")
    details = node.locator("details.log-full")
    details.locator("summary").click()
    expect(details.locator("summary")).to_contain_text(re.compile(r"\(\d+ lines?\)"))
    expect(details.locator("pre")).to_contain_text("Blender")

    # the project finishes (so the next test can delete a finished one too)
    ui.goto()
    expect(card(ui, "Slow still").get_by_role("link", name="Finished Result")).to_be_visible(
        timeout=RENDER_TIMEOUT
    )
    assert project["id"]
    ui.console.assert_clean()


def test_a_failed_project_shows_why_and_can_be_retried(ui, farm, scenes) -> None:
    page = ui.page
    project = submit_via_api(farm, scenes["broken"], "No camera", tiles=1)
    ui.goto()
    item = card(ui, "No camera")
    expect(item).to_have_attribute("data-state", "error", timeout=RENDER_TIMEOUT)
    with farm.client() as client:
        message = client.get(f"/api/projects/{project['id']}").json()["error"]
    assert message
    expect(item.locator(".error-text")).to_have_text(message.strip().splitlines()[0].strip())
    expect(item.get_by_text("No preview")).to_be_visible()

    # uploaded elsewhere: this browser has no owner key, so it asks for the admin password
    page.once("dialog", lambda d: d.accept(farm.password))
    item.get_by_role("button", name="Retry No camera").click()
    expect(page.get_by_role("status").filter(has_text="Retrying “No camera”")).to_be_visible()
    expect(item).not_to_have_attribute("data-state", "error")
    expect(item).to_have_attribute("data-state", "error", timeout=RENDER_TIMEOUT)
    ui.console.assert_clean()


def test_a_worker_barred_from_a_project_is_named_on_it(ui, farm, scenes) -> None:
    project = submit_via_api(farm, scenes["slow"], "Barred", tiles=3)
    # A second worker that fails every task it takes (it talks to the API as a node does);
    # the local node renders the project meanwhile.
    token = {"Authorization": f"Bearer {farm.token}"}
    failures = 0
    with farm.client() as client:
        client.post("/api/nodes/flaky/register", headers=token, json={"blender_version": "3.4.1"})
        deadline = time.monotonic() + 60
        while failures < 3 and time.monotonic() < deadline:
            resp = client.post("/api/nodes/flaky/lease", headers=token)
            if resp.status_code == 204:
                time.sleep(0.2)
                continue
            task = resp.json()
            client.post(
                f"/api/tasks/{task['id']}/fail",
                params={"lease": task["lease"]},
                headers=token,
                json={"node": "flaky", "message": "Error: GPU lost"},
            )
            failures += task["project"] == project["id"]
        client.post("/api/nodes/flaky/leave", headers=token)
    assert failures == 3
    ui.goto()
    item = card(ui, "Barred")
    expect(item.locator(".project-warnings")).to_contain_text("Not given to flaky")
    expect(item.get_by_role("link", name="Finished Result")).to_be_visible(timeout=RENDER_TIMEOUT)
    ui.console.assert_clean()


def test_delete_asks_first_and_removes_the_project(ui, farm, scenes) -> None:
    page = ui.page
    # a 4x4 chunked still that is certainly unfinished when we delete it
    project = submit_via_api(farm, scenes["slow"], "Unfinished still", tiles=4)
    ui.goto()
    item = card(ui, "Unfinished still")
    expect(item).to_be_visible()

    dialog = page.locator("#delete-dialog")
    item.get_by_role("button", name="Delete Unfinished still").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("All progress on this render will be lost")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(item).to_be_visible()

    # uploaded through the API, not this browser: deleting it needs the admin password
    item.get_by_role("button", name="Delete Unfinished still").click()
    password = dialog.get_by_label(re.compile("admin password"))
    expect(password).to_be_visible()
    ui.console.allow(r"status of 403 .*\[.*/api/projects/")
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(dialog.locator("#delete-dialog-error")).to_contain_text("owner key")
    password.fill(farm.password)
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(item).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="Deleted “Unfinished still”")).to_be_visible()
    with farm.client() as client:
        assert client.get(f"/api/projects/{project['id']}").status_code == 404

    # a finished one says what it loses instead; keyboard only: Escape cancels
    done = card(ui, "Slow still")
    done.get_by_role("button", name="Delete Slow still").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_contain_text("Finished Result")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(done).to_be_visible()
    ui.console.assert_clean()


def test_upload_form_explains_bad_values(ui, farm, scenes, tmp_path) -> None:
    page = ui.page
    ui.goto("upload")
    submit = page.get_by_role("button", name="Submit")

    submit.click()
    expect(page.locator("#up-file-err")).to_contain_text("Choose the project's .zip")

    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_text("this is not a zip file\n" * 10)
    page.get_by_label("Project file").set_input_files(not_a_zip)
    expect(page.locator("#up-file-err")).to_contain_text("not a zip")
    expect(page.get_by_label("Blender file to be rendered")).to_be_disabled()

    page.get_by_label("Project file").set_input_files(scenes["quick"])
    expect(page.locator("#up-file-err")).to_be_hidden()
    page.get_by_label("Split image into x by x chunks").fill("0")
    page.get_by_label("Frame to render").fill("")
    submit.click()
    expect(page.locator("#up-tiles-err")).to_contain_text("at least 1")
    expect(page.locator("#up-frame-err")).to_contain_text("whole frame number")
    expect(page.get_by_label("Frame to render")).to_be_focused()

    page.get_by_label("Animation", exact=True).check()
    page.get_by_label("Animation start frame").fill("5")
    page.get_by_label("End frame of animation").fill("2")
    page.get_by_label("Split image into x by x chunks").fill("1")
    submit.click()
    expect(page.locator("#up-end-err")).to_contain_text("must not be before the start frame")

    # the server's own refusal is shown as it says it
    ui.console.allow(r"status of 400 .*\[.*/api/projects\]")
    page.get_by_label("End frame of animation").fill("6")
    page.get_by_label("Split image into x by x chunks").fill("100000")
    submit.click()
    error = page.locator("#up-form-error")
    expect(error).to_contain_text("The server refused the project: tiles must be at most")
    expect(submit).to_be_enabled()
    with farm.client() as client:
        titles = [p["title"] for p in client.get("/api/projects").json()]
    assert "quick" not in titles
    ui.console.assert_clean()


def test_the_server_log_is_shown_after_the_admin_password(ui, farm) -> None:
    page = ui.page
    asked: list[object] = []
    page.on("request", lambda r: asked.append(r) if "/api/logs" in r.url else None)
    ui.goto("settings")
    region = page.get_by_role("region", name="Server log")
    log = page.locator("#server-log")
    password = region.get_by_label("Admin password")
    expect(password).to_be_visible()
    expect(log).to_be_hidden()
    expect(region.get_by_role("button", name="Refresh")).to_be_hidden()
    expect(page.locator("#blender-nodes")).to_contain_text("Blender")
    assert asked == [], "the log was asked for before the password was given"

    # a wrong password: the server's own one-line refusal, next to the field
    ui.console.allow(r"status of 403 .*\[.*/api/logs\]")
    password.fill("not-the-password")
    region.get_by_role("button", name="Show log").click()
    with farm.client() as client:
        refusal = client.get("/api/logs", headers={"X-Blendfarm-Password": "not-the-password"})
    assert refusal.status_code == 403
    expect(page.locator("#log-password-err")).to_have_text(refusal.json()["error"]["message"])
    expect(log).to_be_hidden()

    password.fill(farm.password)
    region.get_by_role("button", name="Show log").click()
    expect(log).to_be_visible()
    expect(log).to_contain_text("submitted")
    expect(password).to_be_hidden()
    page.evaluate("window.scrollTo(0, 0)")
    ui.screenshot("settings.png")

    # the password stays in the page's memory: Refresh sends it again; no storage holds it
    refresh = region.get_by_role("button", name="Refresh")
    with page.expect_request(lambda r: "/api/logs" in r.url) as sent:
        refresh.click()
    assert sent.value.headers.get("x-blendfarm-password") == farm.password
    stored = page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert farm.password not in stored, stored

    # a reloaded page has forgotten it
    page.reload()
    page.locator("#conn[data-state='live']").wait_for()
    expect(page.locator("#server-log")).to_be_hidden()
    expect(password).to_be_visible()
    ui.console.assert_clean()


def test_a_link_cannot_send_the_dashboard_to_another_server(ui, farm, recorder, tmp_path) -> None:
    page = ui.page
    # what an older dashboard may have remembered for this tab, and a link naming a stranger
    ui.goto()
    page.evaluate(f"sessionStorage.setItem('blendfarm-api', {recorder.url!r})")
    page.goto(f"{farm.ui}/?api={recorder.url}#/settings")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#api-base")).to_have_text(farm.api)
    assert page.evaluate("sessionStorage.getItem('blendfarm-api')") is None

    # admin actions with the password go to the farm's own API
    ui.console.allow(r"status of 400 .*\[.*/api/blender\?filename=")
    blender = page.get_by_role("region", name="Blender for the workers")
    fake = tmp_path / "blender-4.2.0-linux-x64.tar.xz"
    fake.write_bytes(b"not an xz archive" * 100)
    blender.get_by_label("Blender archive (.tar.xz)").set_input_files(fake)
    blender.get_by_label("Admin password").fill(farm.password)
    blender.get_by_role("button", name="Upload Blender").click()
    expect(page.locator("#bl-error")).to_contain_text("The server refused the archive:")

    region = page.get_by_role("region", name="Server log")
    region.get_by_label("Admin password").fill(farm.password)
    region.get_by_role("button", name="Show log").click()
    expect(page.locator("#server-log")).to_contain_text("submitted")
    expect(page.locator("#server-log")).not_to_contain_text("from the recorder")

    assert recorder.requests == [], "the dashboard talked to another server"
    ui.console.assert_clean()


def test_settings_purge_needs_the_right_password(ui, farm, tmp_path) -> None:
    page = ui.page
    ui.goto("settings")
    expect(page.locator("#blender-nodes")).to_contain_text("Blender")

    # a new Blender for the workers: the password is checked, then the archive itself
    blender = page.get_by_role("region", name="Blender for the workers")
    fake = tmp_path / "blender-4.2.0-linux-x64.tar.xz"
    fake.write_bytes(b"not an xz archive" * 1000)
    ui.console.allow(r"status of 40[03] .*\[.*/api/blender\?filename=")
    blender.get_by_label("Blender archive (.tar.xz)").set_input_files(fake)
    blender.get_by_label("Admin password").fill("not-the-password")
    blender.get_by_role("button", name="Upload Blender").click()
    expect(page.locator("#bl-password-err")).to_contain_text(re.compile("password", re.I))
    blender.get_by_label("Admin password").fill(farm.password)
    blender.get_by_role("button", name="Upload Blender").click()
    expect(page.locator("#bl-error")).to_contain_text("The server refused the archive:")
    expect(page.locator("#blender-current")).to_contain_text("None uploaded")

    with farm.client() as client:
        assert client.get("/api/projects").json(), "the earlier tests left projects to purge"

    dialog = page.locator("#purge-dialog")
    password = page.get_by_role("region", name="Purge database").get_by_label("Admin password")

    ui.console.allow(r"status of 403 .*\[.*/api/purge\]")
    password.fill("not-the-password")
    page.get_by_role("button", name="Purge database…").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Everything will be deleted")
    dialog.get_by_role("button", name="Delete everything").click()
    expect(page.locator("#purge-password-err")).to_be_visible()
    expect(page.locator("#purge-password-err")).not_to_be_empty()
    with farm.client() as client:
        assert client.get("/api/projects").json(), "a wrong password purged the farm"

    password.fill(farm.password)
    page.get_by_role("button", name="Purge database…").click()
    dialog.get_by_role("button", name="Delete everything").click()
    expect(page.locator("#purge-ok")).to_contain_text("purged")
    with farm.client() as client:
        assert client.get("/api/projects").json() == []

    page.get_by_role("link", name="Home", exact=True).click()
    expect(page.get_by_text("No projects yet.")).to_be_visible()
    expect(page.locator("li.project")).to_have_count(0)
    ui.console.assert_clean()


def test_every_page_at_phone_width_without_errors(ui) -> None:
    page = ui.page
    page.set_viewport_size({"width": 390, "height": 844})
    for route, heading in [
        ("", "Projects"),
        ("upload", "Upload a project"),
        ("workers", "Workers"),
        ("settings", "Settings"),
    ]:
        ui.goto(route)
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        expect(page.locator(f".mainnav a[href='#/{route}']")).to_have_attribute(
            "aria-current", "page"
        )
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"#/{route} scrolls sideways at phone width ({width}px)"
    # the page found the API on its own host, at the port the server's /config.js names
    expect(page.locator("#api-base")).to_have_text(ui.farm.api)
    # keyboard: the navigation is reachable and works with Enter
    page.get_by_role("link", name="Upload", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Upload a project")).to_be_focused()
    ui.console.assert_clean()

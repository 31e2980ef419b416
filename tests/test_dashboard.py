"""The dashboard page (GET /) in headless Chromium: Debian's /usr/bin/chromium driven by
Playwright, never a browser Playwright downloads. The real API listens on a loopback port
with a token configured, a real worker consumes the research queue, both in this test's
event loop; the page asks for a token, refuses a wrong one, goes live with the right one,
shows a job appear and complete, and pauses a queue with a click. It takes a screenshot
each run, into the test's temporary directory; `make screenshot` (UPDATE_SCREENSHOT=1)
writes it to docs/dashboard.png, the README's, so a plain test run changes no tracked file.

Without /usr/bin/chromium the test is skipped, except in CI (CI set), where it fails.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Locator, Page, async_playwright, expect

from api import create_app
from config import Settings
from streams import JobContext, QueueWorker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
README_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VIEWPORT = {"width": 1440, "height": 900}
WAIT_MS = 30_000  # for anything the page shows; generous, machines are noisy
STOP_TIMEOUT_S = 30.0
ADMIN_TOKEN = "dashboard-admin-token-8e7d6c5b4a39"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
QUEUE = "research"
# No rate limit, one attempt (a failing job is dead-lettered at once).
RESEARCH = {"rate_limit": "none", "attempts": 1, "backoff_delay": 0.05}
MORE_JOBS = 8  # finished after the first, so the chart and the counts have something to show
UNREAD_ENRICHMENTS = 3  # no worker reads enrichment: these stay waiting

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                       reason=f"{CHROMIUM} is absent (apt-get install chromium); in CI this fails instead"),
    pytest.mark.timeout(240),
]


@dataclass
class Dashboard:
    url: str
    settings: Settings
    release: asyncio.Event  # jobs of good companies finish once this is set


@pytest.fixture
async def dashboard(make_settings: Callable[..., Settings]) -> AsyncIterator[Dashboard]:
    """The app on 127.0.0.1 (a free port) and a research worker, stopped at teardown."""
    settings = make_settings(api_tokens=[{"name": "ops", "role": "admin", "token": ADMIN_TOKEN}], research=RESEARCH)
    release = asyncio.Event()

    async def research(ctx: JobContext) -> Any:
        if ctx.data["companyId"].startswith("bad"):
            raise RuntimeError(f"no data for {ctx.data['companyId']}")
        await release.wait()
        return {"researchId": f"res_{ctx.id}"}

    runner = web.AppRunner(create_app(settings), shutdown_timeout=1)
    await runner.setup()
    worker = QueueWorker(settings, QUEUE, research)
    working = asyncio.create_task(worker.run())
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield Dashboard(f"http://127.0.0.1:{port}", settings, release)
    finally:
        release.set()
        worker.stop()
        await asyncio.wait_for(working, STOP_TIMEOUT_S)
        await runner.cleanup()


async def add_job(http: aiohttp.ClientSession, company: str, job_type: str = QUEUE, **data: Any) -> str:
    body = {"type": job_type, "data": {"companyId": company, **(data or {"companyName": company.title()})}}
    async with http.post("/api/jobs", json=body) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


def count(card: Locator, state: str) -> Locator:
    return card.locator(f'[data-count="{state}"] dd')


async def enter_token(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#token-form button")


async def test_the_dashboard_shows_a_job_live_and_pauses_a_queue(dashboard: Dashboard, tmp_path: Path) -> None:
    screenshot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright, aiohttp.ClientSession(dashboard.url, headers=AUTH) as http:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            script_errors: list[str] = []  # uncaught exceptions, and CSP refusals (console errors)
            page.on("pageerror", lambda error: script_errors.append(str(error)))
            page.on("console", lambda m: script_errors.append(m.text) if m.type == "error"
                    and not m.text.startswith("Failed to load resource") else None)  # the refused 401
            await page.goto(f"{dashboard.url}/")
            connection = page.locator("#connection")

            await expect(connection).to_have_text("token needed")
            await expect(page.locator("#message")).to_contain_text("needs a token (401)")
            await enter_token(page, "not-a-configured-token")
            await expect(connection).to_have_text("token refused")
            await expect(page.locator("#message")).to_contain_text("the bearer token is not valid")
            await enter_token(page, ADMIN_TOKEN)
            await expect(connection).to_have_text("live")
            assert await page.evaluate("localStorage.getItem('tgjobs.token')") == ADMIN_TOKEN

            card = page.locator(f'section.queue[data-queue="{QUEUE}"]')
            await expect(count(card, "completed")).to_have_text("0")
            job = await add_job(http, "comp_1")
            await expect(page.locator("#events li", has_text=job).first).to_be_visible()
            await expect(count(card, "active")).to_have_text("1")  # the handler holds it until released
            dashboard.release.set()
            await expect(page.locator('#events li[data-event="completed"]', has_text=job)).to_be_visible()
            await expect(count(card, "completed")).to_have_text("1")
            await expect(count(card, "active")).to_have_text("0")

            for n in range(MORE_JOBS):
                await add_job(http, f"comp_{n + 2}")
            failing = await add_job(http, "bad_1")
            for n in range(UNREAD_ENRICHMENTS):
                await add_job(http, "comp_1", "enrichment", contactId=f"contact_{n}")
            enrichment = page.locator('section.queue[data-queue="enrichment"]')
            await expect(count(enrichment, "waiting")).to_have_text(str(UNREAD_ENRICHMENTS))
            await expect(count(card, "completed")).to_have_text(str(1 + MORE_JOBS))
            await expect(card.locator(f'[data-dead="{failing}"]')).to_contain_text("no data for bad_1")
            await expect(card.locator("tbody tr").first).to_be_visible()  # the worker's consumer group

            await card.locator('button[data-action="pause"]').click()
            await expect(card.locator(".badge")).to_have_text("paused")
            async with http.get(f"/api/queues/{QUEUE}") as response:
                assert response.status == 200
                assert (await response.json())["paused"] is True
            screenshot.parent.mkdir(exist_ok=True)
            await page.screenshot(path=screenshot, full_page=True)
            assert screenshot.read_bytes().startswith(PNG_SIGNATURE)

            await page.reload()  # the kept token connects again by itself
            await expect(connection).to_have_text("live")
            await expect(card.locator('button[data-action="resume"]')).to_be_visible()
            assert script_errors == []
        finally:
            await browser.close()

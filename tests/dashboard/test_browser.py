"""The dashboard in a real headless Chromium against the real API, Redis, PostgreSQL and a running worker loop.

Screenshots of each main view go to $CERTQ_SCREENSHOT_DIR when it is set (docs/img/ holds the committed
ones: `CERTQ_SCREENSHOT_DIR=docs/img pytest tests/dashboard/test_browser.py`), else to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from certq.queue import ActiveJob, JobFailed, Runner
from tests.dashboard.conftest import BOARD_PATH, PASSWORD, Api, VerdictMaker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
        reason="Debian's chromium is not installed (the bootstrap installs it)",
    ),
    pytest.mark.timeout(60),
]
expect.set_options(timeout=10_000)


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Page, str], Awaitable[None]]:
    target = Path(os.environ.get("CERTQ_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)

    async def shoot(page: Page, name: str) -> None:
        await page.screenshot(path=str(target / f"dashboard-{name}.png"), full_page=True)

    return shoot


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@contextlib.asynccontextmanager
async def new_page(browser: Browser, **options: Any) -> AsyncIterator[Page]:
    """A page in a context of its own (closed after), failing the test on any JavaScript error."""
    context = await browser.new_context(viewport={"width": 1280, "height": 860}, **options)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield opened
    finally:
        await context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture
async def page(browser: Browser, api: Api) -> AsyncIterator[Page]:
    async with new_page(browser, http_credentials={"username": api.user, "password": PASSWORD}) as opened:
        yield opened


class Worker:
    """A Runner on the test's queue with a handler the test steers: `gate` holds jobs marked {"wait": true};
    jobs marked {"flaky": true} fail for good on their first run and pass when retried."""

    def __init__(self, api: Api) -> None:
        self.gate = asyncio.Event()
        self.seen: set[str] = set()
        self.runner = Runner(
            api.queue.redis,
            api.queue.config,
            self.handle,
            concurrency=3,
            consumer_id=f"e2e-{uuid.uuid4().hex[:6]}",
            grace_ms=500,
            info={"health_port": 3002},
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def handle(self, active: ActiveJob) -> Any:
        payload = active.job.payload
        await active.progress({"done": 0, "total": 1})
        if payload.get("wait"):
            await self.gate.wait()
        if payload.get("flaky") and active.job.id not in self.seen:
            self.seen.add(active.job.id)
            raise JobFailed("upstream answered 503 Service Unavailable", final=True, category="SERVER_ERROR")
        await active.progress({"done": 1, "total": 1})
        return {"ok": True, "echo": payload}

    def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run(self.stop))

    async def close(self) -> None:
        self.gate.set()
        self.stop.set()
        if self.task is not None:
            async with asyncio.timeout(10):
                await self.task


@pytest.fixture
async def worker(api: Api) -> AsyncIterator[Worker]:
    started = Worker(api)
    try:
        yield started
    finally:
        await started.close()


async def open_board(page: Page, api: Api, view: str = "") -> None:
    await page.goto(f"{api.url}{BOARD_PATH}{('/#/' + view) if view else ''}")
    await expect(page.locator("#updated")).to_contain_text("Updated")


async def test_counts_change_live_while_a_worker_runs(page: Page, api: Api, worker: Worker, shots: Any) -> None:
    for n in range(3):
        await api.queue.enqueue({"n": n, "wait": True, "modelId": str(uuid.uuid4()), "region": "eu-west-1"})
    await open_board(page, api)
    await expect(page.locator("#count-waiting")).to_have_text("3")
    await expect(page.locator("tbody tr[data-job]")).to_have_count(3)

    worker.start()
    await expect(page.locator("#count-active")).to_have_text("3")
    await expect(page.locator("#count-waiting")).to_have_text("0")
    await page.click("a[data-state=active]")
    await expect(page.locator("tbody tr[data-job]")).to_have_count(3)
    await shots(page, "queue")

    worker.gate.set()
    await expect(page.locator("#count-completed")).to_have_text("3")
    await expect(page.locator("#count-active")).to_have_text("0")

    await page.click("nav >> text=Workers")
    await expect(page.locator("main")).to_contain_text(worker.runner.id)
    await expect(page.locator("main")).to_contain_text("3002")
    await shots(page, "workers")


async def test_a_failed_job_is_opened_retried_and_completes(page: Page, api: Api, worker: Worker, shots: Any) -> None:
    worker.start()
    job = await api.queue.enqueue({"flaky": True, "region": "us-east-1"}, max_attempts=2)
    await open_board(page, api)
    await expect(page.locator("#count-failed")).to_have_text("1")
    await page.click("a[data-state=failed]")
    await page.click(f"tr[data-job='{job.id}'] a")
    await expect(page.locator("#job-state")).to_contain_text("Failed")
    await expect(page.locator("main")).to_contain_text("upstream answered 503 Service Unavailable")
    await expect(page.locator("main")).to_contain_text("SERVER_ERROR")
    await shots(page, "job")

    await page.get_by_role("button", name=f"Retry job {job.id}").click()
    await expect(page.locator("#notice")).to_contain_text("moved from failed to waiting")
    await expect(page.locator("#job-state")).to_contain_text("Completed")
    await expect(page.locator("main")).to_contain_text('"ok": true')
    await expect(page.locator("#count-failed")).to_have_text("0")


async def test_pause_asks_first_stops_claiming_and_resume_lets_the_job_run(
    page: Page, api: Api, worker: Worker, shots: Any
) -> None:
    worker.start()
    await open_board(page, api)
    await page.click("#pause-toggle")
    await page.click("#confirm-cancel")
    await expect(page.locator("#notice")).to_contain_text("nothing was changed")
    assert not await api.queue.is_paused()

    await page.click("#pause-toggle")
    await page.click("#confirm-ok")
    await expect(page.locator("#queue-state")).to_contain_text("Paused")
    assert await api.queue.is_paused()
    await api.queue.enqueue({"n": 1})
    await expect(page.locator("#count-paused")).to_have_text("1")

    await page.click("#pause-toggle")
    await expect(page.locator("#queue-state")).to_contain_text("Running")
    await expect(page.locator("#count-completed")).to_have_text("1")

    await page.click("nav >> text=Audit log")
    mine = page.locator("main tbody tr", has_text=api.user)
    await expect(mine).to_have_count(2)
    await expect(mine.nth(0)).to_contain_text("resume")
    await expect(mine.nth(1)).to_contain_text("pause")
    await shots(page, "audit")


async def test_certification_matrix_pair_history_and_certify_form(
    page: Page, api: Api, make_model: Any, finished_run: VerdictMaker, shots: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    zone = f"zone-{tag}"  # offered by this test's model only, so "all models" here means exactly one
    good = await make_model(name=f"llama-{tag}", regions=["eu-west-1", zone])
    weak = await make_model(name=f"tiny-{tag}", regions=["eu-west-1"])
    for score, latency in ((78, 420), (86, 310), (93, 240)):
        await finished_run(
            good, "eu-west-1", status="CERTIFIED" if score >= 80 else "QUALITY_WARNING", score=score, latency_ms=latency
        )
    await finished_run(good, zone, status="QUALITY_WARNING", score=72)
    await finished_run(weak, "eu-west-1", status="FAILED", score=35, category="QUALITY_BELOW_THRESHOLD")

    await open_board(page, api, "certifications")
    cell = page.get_by_role("button", name=f"llama-{tag} in eu-west-1: CERTIFIED, rating A, score 93")
    await expect(cell).to_contain_text("Certified")
    await expect(
        page.get_by_role("button", name=f"tiny-{tag} in eu-west-1: FAILED, rating F, score 35")
    ).to_contain_text("Failed")
    await shots(page, "certifications")

    await cell.click()
    await expect(page.locator("main h2")).to_contain_text(f"llama-{tag} in eu-west-1")
    await expect(page.locator("svg.chart circle")).to_have_count(3)
    await expect(page.locator("main tr[data-run]")).to_have_count(3)
    await shots(page, "pair")

    await page.click("text=Back to the matrix")
    await page.select_option("#cf-mode", "multiple")
    await page.check(f"label:has-text('tiny-{tag}') input")
    await page.check("label:has-text('eu-west-1') input")
    await page.get_by_role("button", name="Certify", exact=True).click()
    await expect(page.locator("#notice")).to_contain_text("1 certification(s) requested in eu-west-1")
    await expect(page.locator("#count-waiting")).to_have_text("1")

    await page.select_option("#cf-mode", "all")
    assert await page.is_disabled(f"label:has-text('tiny-{tag}') input")
    await page.uncheck("label:has-text('eu-west-1') input")
    await page.check(f"label:has-text('{zone}') input")
    await page.get_by_role("button", name="Certify", exact=True).click()
    await expect(page.locator("#notice")).to_contain_text(f"all: 1 certification(s) requested in {zone}")
    await expect(page.locator("#count-waiting")).to_have_text("2")


async def test_the_matrix_filters_to_pairs_certified_for_a_capability(
    page: Page, api: Api, make_model: Any, finished_run: VerdictMaker, shots: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    agent = await make_model(name=f"agent-{tag}", regions=["eu-west-1"])
    chat = await make_model(name=f"chat-{tag}", regions=["eu-west-1"])
    await api.store.pool.execute("""UPDATE models SET capabilities = '{"tools": true}' WHERE id = $1""", agent.id)
    await finished_run(
        agent, "eu-west-1", score=94, capabilities={"verified": ["tools"], "failed": [], "notDeclared": []}
    )
    await finished_run(
        chat, "eu-west-1", score=91, capabilities={"verified": [], "failed": [], "notDeclared": ["tools"]}
    )

    await open_board(page, api, "certifications")
    agent_cell = page.get_by_role("button", name=f"agent-{tag} in eu-west-1: CERTIFIED, rating A, score 94")
    await expect(agent_cell).to_contain_text("\u2713 tools")
    await expect(page.locator("main th", has_text=f"agent-{tag}")).to_contain_text("declares tools")
    await expect(
        page.get_by_role("button", name=f"chat-{tag} in eu-west-1: CERTIFIED, rating A, score 91")
    ).to_be_visible()

    await page.select_option("#cap-filter", "tools")
    await expect(agent_cell).to_be_visible()
    await expect(
        page.get_by_role("button", name=f"chat-{tag} in eu-west-1: CERTIFIED, rating A, score 91")
    ).to_have_count(0)
    await expect(page.locator("main td", has_text=f"chat-{tag} in eu-west-1: not certified for tools")).to_have_count(1)
    await shots(page, "certifications-tools")
    await page.select_option("#cap-filter", "")
    await expect(
        page.get_by_role("button", name=f"chat-{tag} in eu-west-1: CERTIFIED, rating A, score 91")
    ).to_be_visible()


async def test_expired_and_expiring_cells_say_so_in_words(
    page: Page, api: Api, make_model: Any, finished_run: VerdictMaker
) -> None:
    tag = uuid.uuid4().hex[:6]
    old = await make_model(name=f"old-{tag}", regions=["eu-west-1"])
    soon = await make_model(name=f"soon-{tag}", regions=["eu-west-1"])
    gone = await finished_run(old, "eu-west-1", score=93)
    ending = await finished_run(soon, "eu-west-1", score=92)
    await api.store.pool.execute(
        "UPDATE certifications SET valid_until = now() - interval '1 hour' WHERE id = $1", gone
    )
    await api.store.pool.execute(
        "UPDATE certifications SET valid_until = now() + interval '2 hours' WHERE id = $1", ending
    )
    await open_board(page, api, "certifications")
    expired = page.get_by_role("button", name=f"old-{tag} in eu-west-1: EXPIRED (was CERTIFIED)")
    await expect(expired).to_contain_text("was certified")
    await expect(expired).not_to_contain_text("[object")
    expiring = page.get_by_role("button", name=f"soon-{tag} in eu-west-1: CERTIFIED")
    await expect(expiring).to_contain_text("expires soon")
    await expect(expiring).not_to_contain_text("[object")


async def test_history_search_runs_over_postgresql(
    page: Page, api: Api, make_model: Any, finished_run: VerdictMaker, shots: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    model = await make_model(name=f"search-{tag}", regions=["eu-west-1", "ap-south-1"])
    await finished_run(model, "eu-west-1", status="CERTIFIED", score=91)
    failed = await finished_run(model, "ap-south-1", status="FAILED", score=12, category="QUALITY_BELOW_THRESHOLD")
    await open_board(page, api, "history")
    await page.fill("#q-model", tag)
    await page.select_option("#q-status", "FAILED")
    await page.click("button:has-text('Search')")
    rows = page.locator("main tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("ap-south-1")
    await shots(page, "history")
    await rows.first.locator("a").click()
    await expect(page.locator("main")).to_contain_text(str(failed))
    await expect(page.locator("main")).to_contain_text("QUALITY_BELOW_THRESHOLD")
    await expect(page.locator("main")).to_contain_text("json-output")
    await shots(page, "run")
    await page.get_by_role("button", name="Certify again").click()
    await expect(page.locator("#notice")).to_contain_text("single: 1 certification(s) requested in ap-south-1")
    await expect(page.locator("#count-waiting")).to_have_text("1")


async def test_phone_width_keeps_counts_and_navigation_usable(browser: Browser, api: Api, shots: Any) -> None:
    context = await browser.new_context(
        http_credentials={"username": api.user, "password": PASSWORD},
        viewport={"width": 390, "height": 844},
        is_mobile=True,
    )
    try:
        phone = await context.new_page()
        await api.queue.enqueue({"n": 1})
        await open_board(phone, api)
        await expect(phone.locator("#count-waiting")).to_have_text("1")
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
        await phone.keyboard.press("Tab")
        focused = await phone.evaluate("document.activeElement.textContent")
        assert focused == "Skip to content"
        await shots(phone, "phone")
    finally:
        await context.close()


async def test_main_views_pass_axe_wcag_aa_checks(
    page: Page, api: Api, make_model: Any, finished_run: VerdictMaker
) -> None:
    from axe_playwright_python.async_playwright import Axe

    model = await make_model(regions=["eu-west-1", "us-east-1"])
    await finished_run(model, "eu-west-1", status="QUALITY_WARNING", score=75)
    job = await api.queue.enqueue({"modelId": str(model.id), "region": "eu-west-1"})
    axe = Axe()
    found: dict[str, list[str]] = {}
    for view, ready in (
        ("queue", "tbody tr[data-job]"),
        (f"job/{job.id}", "#job-state"),
        ("history", "main tbody tr"),
        ("workers", "main table"),
        ("audit", "main table"),
        ("certifications", "table.matrix"),
        (f"pair/{model.id}/eu-west-1", "svg.chart"),
        ("schedules", "#schedule-form"),
    ):
        await open_board(page, api, view)
        await expect(page.locator(ready).first).to_be_visible()
        results = await axe.run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}})
        violations = results.response["violations"]
        found[view] = [f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}" for v in violations]
    assert all(not v for v in found.values()), found


async def test_counts_and_workers_follow_the_real_worker_process(
    page: Page, api: Api, redis_url: str, migrated_database_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTIFICATION_", "WORKER_", "LOG_", "BULL_"))}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=migrated_database_url,
        BULL_QUEUE_PREFIX=api.settings.queue_prefix,
        WORKER_HEALTH_HOST="127.0.0.1",
        WORKER_HEALTH_PORT="0",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    for n in range(4):
        await api.queue.enqueue({"n": n, "sleep": 0.8})
    await open_board(page, api)
    await expect(page.locator("#count-waiting")).to_have_text("4")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "certq.worker",
        "--concurrency",
        "2",
        "--handler",
        "certq.worker.testing:scripted",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await expect(page.locator("#count-active")).to_have_text("2", timeout=20_000)
        await page.click("nav >> text=Workers")
        row = page.locator("main tbody tr").first
        await expect(row).to_contain_text(str(process.pid))
        await expect(row.locator("td").nth(3)).to_have_text("2")
        assert (await row.locator("td").nth(5).inner_text()).isdigit(), "the worker's health port is shown"
        await expect(page.locator("#count-completed")).to_have_text("4", timeout=20_000)
    finally:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(20):
            await process.wait()


async def test_a_job_is_opened_by_its_id_from_the_queue_view(page: Page, api: Api) -> None:
    job = await api.queue.enqueue({"n": 7}, job_id=f"nightly-{uuid.uuid4().hex[:6]}")
    await open_board(page, api)
    await page.fill("#goto-job", job.id)
    await page.keyboard.press("Enter")
    await expect(page.locator("main h2")).to_contain_text(job.id)
    await expect(page.locator("#job-state")).to_contain_text("Waiting")


async def pause_from_the_board(page: Page, api: Api) -> None:
    """Counts that come live, then a state change (a POST with the CSRF header) the server accepts."""
    await api.queue.enqueue({"n": 1})
    await expect(page.locator("#updated")).to_contain_text("Updated")
    await expect(page.locator("#count-waiting")).to_have_text("1")
    await page.click("#pause-toggle")
    await page.click("#confirm-ok")
    await expect(page.locator("#queue-state")).to_contain_text("Paused")
    assert await api.queue.is_paused()


@pytest.mark.parametrize("path", [BOARD_PATH, BOARD_PATH + "/"])
async def test_credentials_in_the_url_open_the_board_and_its_json(browser: Browser, api: Api, path: str) -> None:
    # No http_credentials: the only credentials the browser has are the ones in the address.
    host = urlsplit(api.url).netloc
    async with new_page(browser) as bare:
        answer = await bare.goto(f"http://{quote(api.user)}:{quote(PASSWORD)}@{host}{path}")
        assert answer is not None and answer.status == 200, answer and await answer.text()
        landed = urlsplit(bare.url)
        assert (landed.path, landed.password) == (BOARD_PATH + "/", quote(PASSWORD)), "the page keeps them in its URL"
        await pause_from_the_board(bare, api)
        await expect(bare.locator("header.top")).to_have_css("display", "flex")  # board.css loaded too


async def test_the_browsers_own_prompt_comes_before_the_slash_redirect(browser: Browser, api: Api) -> None:
    # The prompt as DevTools answers it (a person typing the password would do the same): every request
    # pauses at Fetch, and a challenge (Fetch.authRequired) is answered with the board's credentials.
    async with new_page(browser) as bare:
        cdp = await bare.context.new_cdp_session(bare)
        challenged: list[str] = []

        async def go_on(event: dict[str, Any]) -> None:
            await cdp.send("Fetch.continueRequest", {"requestId": event["requestId"]})

        async def sign_in(event: dict[str, Any]) -> None:
            challenged.append(event["request"]["url"])
            await cdp.send(
                "Fetch.continueWithAuth",
                {
                    "requestId": event["requestId"],
                    "authChallengeResponse": {
                        "response": "ProvideCredentials",
                        "username": api.user,
                        "password": PASSWORD,
                    },
                },
            )

        cdp.on("Fetch.requestPaused", go_on)
        cdp.on("Fetch.authRequired", sign_in)
        await cdp.send("Fetch.enable", {"handleAuthRequests": True})
        await bare.goto(f"{api.url}{BOARD_PATH}")
        await pause_from_the_board(bare, api)
        assert bare.url == f"{api.url}{BOARD_PATH}/"
        # Asked once, at the address typed: the redirect and every fetch after it reuse the answer.
        assert challenged == [f"{api.url}{BOARD_PATH}"]


async def test_a_schedule_is_created_paused_and_resumed_from_the_board(
    page: Page, api: Api, make_model: Any, shots: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    model = await make_model(name=f"llama-{tag}", regions=["eu-west-1"])
    await open_board(page, api, "schedules")
    await page.fill("#sf-name", f"nightly-{tag}")
    await page.fill("#sf-cron", "61 3 * * *")
    await page.get_by_role("button", name="Create schedule").click()
    await expect(page.locator("#notice")).to_contain_text("(field: cron)")  # the API's validation answered

    await page.fill("#sf-cron", "30 2 * * *")
    await page.fill("#sf-zone", "Europe/Berlin")
    await page.check(f"label:has-text('llama-{tag}') input")
    await page.select_option("#sf-filter", "FAILED")
    await page.get_by_role("button", name="Create schedule").click()
    await expect(page.locator("#notice")).to_contain_text(f"created schedule 'nightly-{tag}'")
    row = page.locator("tr[data-schedule]", has_text=f"nightly-{tag}")
    await expect(row).to_contain_text("only FAILED")
    await expect(row).to_contain_text(f"llama-{tag}")
    await expect(row.locator(".sched-state")).to_contain_text("Active")
    [record] = [s for s in await api.store.list_schedules() if s.name == f"nightly-{tag}"]
    assert (record.cron, record.timezone, record.model_ids, record.filter_standings) == (
        "30 2 * * *",
        "Europe/Berlin",
        [model.id],
        ["FAILED"],
    )

    await row.get_by_role("button", name=f"Pause schedule nightly-{tag}").click()
    await expect(row.locator(".sched-state")).to_contain_text("Paused")
    await shots(page, "schedules")
    assert (await api.store.get_schedule(record.id)).paused  # type: ignore[union-attr]
    await row.get_by_role("button", name=f"Resume schedule nightly-{tag}").click()
    await expect(row.locator(".sched-state")).to_contain_text("Active")
    actions = await api.store.pool.fetch(
        "SELECT actor, action FROM dashboard_audit WHERE target = $1 ORDER BY id", str(record.id)
    )
    assert [(a["actor"], a["action"]) for a in actions] == [
        (api.user, "schedule.create"),
        (api.user, "schedule.pause"),
        (api.user, "schedule.resume"),
    ]


async def test_the_pair_history_marks_standing_changes_in_words_and_symbols(
    page: Page, api: Api, make_model: Any, finished_run: VerdictMaker, shots: Any
) -> None:
    model = await make_model(regions=["eu-west-1"])
    await finished_run(model, "eu-west-1", status="CERTIFIED", score=95)
    worse = await finished_run(model, "eu-west-1", status="QUALITY_WARNING", score=74)
    assert await api.store.record_drift(worse) is not None
    await open_board(page, api, f"pair/{model.id}/eu-west-1")
    marked = page.locator(f"tr[data-run='{worse}']")
    await expect(marked).to_have_class("transition t-degraded")
    await expect(marked.locator("[data-kind=degraded]")).to_contain_text(
        "Degraded: from Certified 95 to Quality warning 74"
    )
    await expect(page.locator("#transitions-legend")).to_contain_text("Degraded (1)")
    await expect(page.locator("tr.transition")).to_have_count(1)
    await expect(page.locator("svg.chart text.chart-mark.t-degraded")).to_have_count(1)
    await shots(page, "pair-transitions")

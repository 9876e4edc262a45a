"""The dashboard (/ui) against a real API + worker run, a real Redis (a valkey of its own, so no
other test's database is touched) and real sockets: sign-in, every page, CSRF, replay and purge,
and one pass in headless Chromium that a person could have made.

The pages are served by a small Starlette app that mounts `ui_routes()` with the state the API
gives them (settings, a RulesReloader, a Redis client); once the API mounts them itself, every
check runs against the API's /ui too.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from starlette.applications import Starlette

from conftest import ADMIN, ADMIN_TOKEN, ROOT, SDP_TOKEN, Service, base_env, free_port, run_service, wait_until, with_db
from engine import store
from engine.config import Settings, load_settings
from engine.embedded_redis import start_embedded
from engine.reload import RulesReloader
from engine.rule_files import load_ruleset
from engine.ui import COOKIE, ui_routes
from engine.ui_views import request_view, utc
from sandbox_server import running_app
from stand_in import StandIn

NASTY_TITLE = "<script>alert('x')</script> & co"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@dataclass
class World:
    service: Service
    settings: Settings
    targets: list[str]  # dashboards to check: the test app, and the API's own /ui once mounted
    closed_event: str  # its action got a 400: a dead letter
    second_dead_event: str
    slipped_event: str  # matched raise-priority-when-slipping, done


def milestone(sample: str, **fields: object) -> bytes:
    body = json.loads((ROOT / "samples" / sample).read_text())
    body["milestone"].update(id=str(random.randrange(10**14, 10**15)), **fields)
    return json.dumps(body).encode()


def post_and_wait(service: Service, body: bytes, key: str, outcome: str) -> str:
    event_id = service.post(body).json()["event_id"]
    record = service.wait_event(event_id, lambda r: r["actions"].get(key, {}).get("outcome") == outcome)
    assert record is not None, service.logs()
    return event_id


def ui_app(settings: Settings, url: str) -> Starlette:
    """What engine.api.create_app gives the dashboard: the same three things on app.state."""
    app = Starlette(routes=ui_routes())
    app.state.settings = settings
    app.state.rules = RulesReloader(settings.rules_dir, settings.targets, load_ruleset(settings.rules_dir, settings.targets))
    app.state.redis = store.connect(url)
    return app


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = start_embedded(tmp_path_factory.mktemp("ui-valkey"), port=free_port())
    url = with_db(server.connection_url, 0)
    try:
        with StandIn() as sdp:
            env = base_env(REDIS_URL=url, HOOKRULES_SDP_URL=sdp.url + "/app/itdesk", HOOKRULES_SDP_TOKEN=SDP_TOKEN)
            service = run_service(tmp_path_factory.mktemp("ui-service"), env, db=redis.Redis.from_url(url))
            try:
                sdp.replies += [(400, {}), (400, {})]  # SDP refuses the first two closes: dead letters
                closed = post_and_wait(service, milestone("milestone-completed.json"), "close-finished-milestone:0", "failed")
                second = post_and_wait(service, milestone("milestone-completed.json"), "close-finished-milestone:0", "failed")
                slipped = post_and_wait(service, milestone("milestone-slipped.json", title=NASTY_TITLE),
                                        "raise-priority-when-slipping:0", "done")
                settings = load_settings(env)
                with running_app(ui_app(settings, url)) as app:
                    targets = [app.url]
                    if httpx.get(f"{service.url}/ui/login", timeout=5).status_code == 200:
                        targets.append(service.url)  # the API mounts the dashboard itself now
                    yield World(service, settings, targets, closed, second, slipped)
            finally:
                for process in service.processes:
                    process.stop()
                service.redis.close()
    finally:
        server.stop()


@contextmanager
def signed_in(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        reply = client.post("/ui/login", data={"token": ADMIN_TOKEN, "next": "/ui"})
        assert reply.status_code == 303 and reply.headers["location"] == "/ui", reply.text
        yield client


def page(client: httpx.Client, path: str, **params: str) -> str:
    reply = client.get(path, params=params) if params else client.get(path)  # params={} would drop path's query
    assert reply.status_code == 200, (path, reply.status_code, reply.text[:500])
    assert reply.headers["content-type"].startswith("text/html")
    assert "script-src" not in reply.headers["content-security-policy"]  # default-src 'none': no script at all
    return reply.text


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)


def test_sign_in_is_required_and_the_cookie_never_holds_the_token(world: World) -> None:
    for base in world.targets:
        with httpx.Client(base_url=base, timeout=10) as anonymous:
            for path in ("/ui", "/ui/rules", "/ui/events", f"/ui/events/{world.closed_event}", "/ui/dead"):
                reply = anonymous.get(path)
                assert reply.status_code == 303 and reply.headers["location"].startswith("/ui/login?next="), path
            assert anonymous.get("/ui", headers={"Authorization": "Bearer wrong"}).status_code == 303
            assert anonymous.post(f"/ui/dead/{world.closed_event}:close-finished-milestone:0/replay").status_code == 303
            assert 'name="token"' in page(anonymous, "/ui/login")
            wrong = anonymous.post("/ui/login", data={"token": "not-it", "next": "/ui"})
            assert wrong.status_code == 401 and "not the admin token" in wrong.text and COOKIE not in wrong.headers.get("set-cookie", "")
            assert anonymous.get("/ui", headers=ADMIN).status_code == 200  # a script may send the bearer header
        right = httpx.post(f"{base}/ui/login", data={"token": ADMIN_TOKEN, "next": "https://elsewhere.example/"})
        assert right.status_code == 303 and right.headers["location"] == "/ui"  # never sent off-site
        cookie = right.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and ADMIN_TOKEN not in cookie
        assert {"httponly", "samesite=strict", "path=/ui"} <= {part.strip().lower() for part in cookie.split(";")}


def test_overview_shows_health_and_the_chart(world: World) -> None:
    for base in world.targets:
        with signed_in(base) as client:
            html = page(client, "/ui")
            assert 'id="status">ok<' in html and "reachable" in html
            assert "Worker heartbeat" in html and "s ago" in html and "Queue: jobs waiting" in html
            assert re.search(r'<a href="/ui/dead">[12]</a>', html)  # the dead-letter count
            assert html.count("<polyline") == 2 and "Events and actions per minute" in html
            total_events = re.search(r"━ events</span> \((\d+)\)", html)
            assert total_events and int(total_events.group(1)) >= 3
            for nav in ('href="/ui/rules"', 'href="/ui/events"', 'href="/ui/dead"', 'action="/ui/logout"'):
                assert nav in html


def test_rules_page_lists_rules_with_their_counts(world: World) -> None:
    for base in world.targets:
        with signed_in(base) as client:
            html = page(client, "/ui/rules")
            for rule in ("close-finished-milestone", "raise-priority-when-slipping"):
                row = re.search(rf'<tr id="rule-{rule}">(.*?)</tr>', html, re.S).group(1)
                matched = int(re.search(r'class="matched">(\d+)<', row).group(1))
                candidates = int(re.search(r'class="candidates">(\d+)<', row).group(1))
                assert matched > 0 and candidates >= matched, row
                assert "sdp-milestones.yaml:" in row and "milestone.*" in row
                assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)  # the last match, in UTC


def test_events_page_lists_and_filters(world: World) -> None:
    for base in world.targets:
        with signed_in(base) as client:
            html = page(client, "/ui/events")
            assert all(e in html for e in (world.closed_event, world.second_dead_event, world.slipped_event))
            by_rule = page(client, "/ui/events", rule="raise-priority-when-slipping", source="sdp", status="decided")
            assert world.slipped_event in by_rule  # it was a candidate for the others too, so no "not in" here
            entity = world.service.event(world.closed_event)["event"]["entity"]["id"]
            only = page(client, "/ui/events", entity=f"milestone:{entity}")
            assert world.closed_event in only and world.slipped_event not in only
            assert "No events match." in page(client, "/ui/events", source="nobody")


def test_event_drill_down_shows_decision_request_and_attempts_escaped(world: World) -> None:
    for base in world.targets:
        with signed_in(base) as client:
            html = page(client, f"/ui/events/{world.closed_event}")
            assert world.closed_event in html and "Entity data" in html and '"actual_end_time"' not in html
            assert "&#34;actual_end_time&#34;" in html  # pretty JSON, escaped
            assert re.search(r"close-finished-milestone</code></a></td><td>on</td>\s*<td><span class=\"pill ok\">matched", html)
            # Why it matched: the part of the condition that decided, and its value.
            assert re.search(r'class="why">because <code>\{&#34;and&#34;: \[\{&#34;changed&#34;: &#34;milestone.actual_end_time&#34;\}.*? was true</code>', html)
            assert "PUT http://127.0.0.1:" in html and "/api/v3/projects/" in html and "input_data = {" in html
            assert "HTTP 400" in html and "1 attempt(s)" in html and "<td>failed</td><td>400</td>" in html
            slipped = page(client, f"/ui/events/{world.slipped_event}")
            assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co" in slipped and "<script>" not in slipped
            assert "<td>done</td><td>200</td>" in slipped
            assert client.get("/ui/events/evt_000000000000000000000000").status_code == 404


def test_in_headless_chromium(world: World, tmp_path: Path) -> None:
    """Sign in through the form, then the overview, the rules and an event, as a person would."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        installed = subprocess.run(["bash", str(ROOT / ".ci" / "install-browser")], capture_output=True, text=True)
        assert installed.returncode == 0, f".ci/install-browser failed:\n{installed.stdout}{installed.stderr}"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    # The driver path given: selenium never looks for (or downloads) a driver of its own.
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=str(CHROMEDRIVER)))
    try:
        base = world.targets[-1]  # the API's own /ui once mounted
        driver.get(base + "/ui/rules")
        assert driver.current_url.startswith(base + "/ui/login")
        driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        driver.find_element(By.ID, "sign-in").click()
        assert wait_until(lambda: driver.current_url == base + "/ui/rules", timeout_s=10), driver.current_url
        rules = driver.find_element(By.ID, "rules").text
        assert "close-finished-milestone" in rules and "raise-priority-when-slipping" in rules
        driver.save_screenshot(str(tmp_path / "ui-rules.png"))

        driver.get(base + "/ui")
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Overview" in body and "Worker heartbeat" in body and "Events and actions per minute" in body
        assert driver.find_element(By.ID, "status").text == "ok"
        driver.save_screenshot(str(tmp_path / "ui-overview.png"))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "ui-overview.png", ARTIFACTS / "ui-overview.png")

        driver.find_element(By.LINK_TEXT, "Dead letters").click()
        dead = driver.find_element(By.ID, "dead").text
        assert f"{world.closed_event}:close-finished-milestone:0" in dead and "Replay" in dead and "Purge" in dead
        driver.save_screenshot(str(tmp_path / "ui-dead.png"))

        driver.find_element(By.LINK_TEXT, "Events").click()
        driver.find_element(By.LINK_TEXT, world.slipped_event).click()
        body = driver.find_element(By.TAG_NAME, "body").text
        assert f"Event {world.slipped_event}" in body and NASTY_TITLE in body  # shown as text, not run
        assert "raise-priority-when-slipping" in body and "done" in body and "PUT http://127.0.0.1:" in body
        driver.set_window_size(1280, 1700)  # the decision and the actions, above the entity data
        driver.save_screenshot(str(tmp_path / "ui-event.png"))
    finally:
        driver.quit()


def test_authorization_headers_are_masked_even_when_a_record_holds_one(world: World) -> None:
    shown = request_view({"method": "GET", "url": "https://x", "headers": {"AUTHORIZATION": "Bearer s3cret", "Accept": "a"}})
    assert shown == "GET https://x\nAUTHORIZATION: ****\nAccept: a"
    # The same through Redis and the page: an old record that did keep such a header.
    event_id = "evt_" + "ab" * 12
    record = json.loads(world.service.redis.hget(store.EVENT_PREFIX + world.slipped_event, "event"))
    leaky = {"action": "http.request", "outcome": "done", "history": [],
             "request": {"method": "POST", "url": "https://hooks.example/x", "headers": {"Authorization": "Bearer leak-me-123"}}}
    world.service.redis.hset(store.EVENT_PREFIX + event_id,
                             mapping={"event": json.dumps({**record, "id": event_id}), "status": "decided", "action:r:0": json.dumps(leaky)})
    try:
        with signed_in(world.targets[0]) as client:
            html = page(client, f"/ui/events/{event_id}")
        assert "leak-me-123" not in html and "Authorization: ****" in html
    finally:
        world.service.redis.delete(store.EVENT_PREFIX + event_id)


def test_replay_and_purge_need_the_csrf_token(world: World) -> None:
    base = world.targets[-1]  # the API's own /ui once mounted
    replayed = f"{world.closed_event}:close-finished-milestone:0"
    purged = f"{world.second_dead_event}:close-finished-milestone:0"
    with signed_in(base) as client:
        html = page(client, "/ui/dead")
        assert replayed in html and purged in html and "HTTP" in html
        csrf = csrf_of(html)
        assert client.post(f"/ui/dead/{replayed}/replay").status_code == 403
        assert client.post(f"/ui/dead/{replayed}/replay", data={"csrf": "0" * 64}).status_code == 403
        assert client.post(f"/ui/dead/{purged}/purge", data={}).status_code == 403
        assert replayed in page(client, "/ui/dead")  # refused means nothing happened

        reply = client.post(f"/ui/dead/{replayed}/replay", data={"csrf": csrf})
        assert reply.status_code == 303 and reply.headers["location"].startswith("/ui/dead?flash=replayed")
        after = page(client, reply.headers["location"])
        assert "Replay queued for " + replayed in after and f"<code>{replayed}</code>" not in after
        done = world.service.wait_event(world.closed_event, lambda r: r["actions"]["close-finished-milestone:0"]["outcome"] == "done")
        assert done and done["actions"]["close-finished-milestone:0"]["replay"] == 1, world.service.logs()

        reply = client.post(f"/ui/dead/{purged}/purge", data={"csrf": csrf})
        assert reply.status_code == 303 and "flash=purged" in reply.headers["location"]
        assert purged not in page(client, "/ui/dead")
        again = client.post(f"/ui/dead/{purged}/purge", data={"csrf": csrf})
        assert "flash=missing" in again.headers["location"]
        assert "No dead letter" in page(client, again.headers["location"])

        assert client.post("/ui/logout").status_code == 403
        out = client.post("/ui/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert re.search(rf'{COOKIE}=""?;.*Max-Age=0', out.headers["set-cookie"], re.I)


def test_without_an_admin_token_the_dashboard_is_off(world: World) -> None:
    settings = dataclasses.replace(world.settings, admin_token=None)
    with running_app(ui_app(settings, world.settings.redis_url or "")) as off:
        for path in ("/ui", "/ui/login", "/ui/dead"):
            reply = httpx.get(off.url + path, timeout=5)
            assert reply.status_code == 403 and "HOOKRULES_ADMIN_TOKEN" in reply.text
        assert httpx.post(off.url + "/ui/login", data={"token": ""}, timeout=5).status_code == 403


def test_times_are_utc() -> None:
    assert utc(0) == "1970-01-01 00:00:00" and utc(1512974940.5) == "2017-12-11 06:49:00" and utc(None) == "—"

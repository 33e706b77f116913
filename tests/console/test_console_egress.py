"""The sandbox page's Egress panel in a real browser, against a real controller and a real sandbox whose agent calls
out through its egress door: a refused request and tunnel, and a model call through an admin's service, appear
live.

Screenshots are saved under test-artifacts/console/ (desktop 1280x800, and 390x844), like the other console
scenarios.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import PHONE, Console
from tests.controller.oversight.conftest import decide, pending_for
from tests.upstreams import ModelServer

SERVICE = "egress-model"

# The sandbox's agent, once told to go: a plain request and a tunnel to an internal address (the proxy answers 403
# for both), then one model call through the service door; what it saw goes to its output.
REFUSED = """
import urllib.error, urllib.request
for url in ("http://10.1.2.3/", "https://10.1.2.3/"):
    print("fetching", url)
    try:
        urllib.request.urlopen(url, timeout=30)
    except (urllib.error.URLError, OSError) as e:
        print("  refused:", e)
"""
MODEL_CALL = f"""
import json, urllib.request
body = json.dumps({{"model": "claude-egress", "max_tokens": 20, "messages": [{{"role": "user", "content": "hi"}}]}})
request = urllib.request.Request("http://127.0.0.1:7070/{SERVICE}/v1/messages", data=body.encode(), method="POST",
                                 headers={{"content-type": "application/json", "anthropic-version": "2023-06-01"}})
print("asking the model through", request.full_url)
with urllib.request.urlopen(request, timeout=120) as answer:
    print("  model:", json.load(answer)["content"][0]["text"])
"""
WAIT_THEN_RUN = 'until [ -e /workspace/go ]; do sleep 0.2; done; python3 -u -c "$0"; sleep 600'


@pytest.fixture
def model_service(admin: httpx.Client) -> Iterator[ModelServer]:
    """A scripted model on loopback, registered as an admin's service for the test."""
    server = ModelServer(gap_s=0).start()
    made = admin.post(
        "/api/v1/services",
        json={"name": SERVICE, "kind": "anthropic", "upstream": server.url, "secret": "sk-test-egress-panel"},
    )
    assert made.status_code == 201, made.text
    yield server
    admin.delete(f"/api/v1/services/{SERVICE}")
    server.stop()


def test_the_sandbox_page_shows_its_egress_live(
    console: Callable[..., Console],
    governed: Callable[..., dict[str, Any]],
    admin: httpx.Client,
    model_service: ModelServer,
) -> None:
    sandbox = governed({"default": "allow", "rules": []}, command=["sh", "-c", WAIT_THEN_RUN, REFUSED + MODEL_CALL])
    tab = console()
    page = tab.login(f"#/sandbox/{sandbox['id']}")
    panel = page.locator(".panel-egress")
    usage = panel.locator(".egress-usage")
    expect(usage).to_contain_text("Model requests 0 of 1,000")
    expect(panel).to_contain_text("No connections or model calls yet")
    page.evaluate("window.__sameDocument = true")

    go = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json={"command": ["touch", "/workspace/go"]})
    assert go.status_code == 200, go.text
    expect(page.locator(".term-screen")).to_contain_text("model: Hello from the scripted model")
    expect(page.locator(".term-screen")).to_contain_text("refused: HTTP Error 403")

    rows = panel.locator("tbody tr")
    expect(rows).to_have_count(3)  # live: the page was not reloaded
    plain = rows.filter(has_text="http.request")
    expect(plain.locator(".egress-dest")).to_have_text("GET http://10.1.2.3/")
    expect(plain.locator(".badge")).to_have_text("denied")
    expect(plain.locator(".egress-by")).to_have_text("guard")
    expect(plain.locator(".egress-decision")).to_have_attribute(
        "title", re.compile(r"^denied by guard: 10\.1\.2\.3:80 is .*sandboxes may not reach it")
    )
    tunnel = rows.filter(has_text="net.connect")
    expect(tunnel.locator(".egress-dest")).to_have_text("10.1.2.3:443")
    expect(tunnel.locator(".badge")).to_have_text("denied")
    model = rows.first  # newest first
    expect(model).to_contain_text("model.request")
    expect(model.locator(".egress-dest")).to_have_text(f"{SERVICE} · claude-egress")
    expect(model.locator(".badge")).to_have_text("allowed")
    expect(model.locator(".egress-by")).to_have_text("policy")
    expect(model.locator('td[data-label="HTTP"]')).to_have_text("200")
    expect(model.locator('td[data-label="Tokens in / out"]')).to_have_text("11 / 5")
    expect(model.locator('td[data-label="In"]')).to_have_text(re.compile(r"^\d+ B$"))
    expect(usage).to_contain_text("Model requests 1 of 1,000")
    expect(usage).to_contain_text("Tokens 11 in · 5 out of 5,000,000")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert model_service.seen[-1].headers["x-api-key"] == "sk-test-egress-panel"

    panel.evaluate("el => el.scrollIntoView({ block: 'end' })")  # the agent's output above, its egress below
    tab.shot("sandbox-egress")

    phone = console(PHONE)
    phone_page = phone.login(f"#/sandbox/{sandbox['id']}")  # from the API this time, rows as cards
    phone_rows = phone_page.locator(".panel-egress tbody tr")
    expect(phone_rows).to_have_count(3)
    expect(phone_rows.first.locator('td[data-label="Tokens in / out"]')).to_have_text("11 / 5")
    phone_rows.first.evaluate("el => el.scrollIntoView({ block: 'start' })")
    phone.shot("sandbox-egress-phone")


def test_an_asked_model_call_waits_in_the_panel_and_shows_what_it_carried_once_approved(
    console: Callable[..., Console],
    governed: Callable[..., dict[str, Any]],
    admin: httpx.Client,
    model_service: ModelServer,
) -> None:
    policy = {"default": "allow", "rules": [{"tool": "model.request", "decision": "ask"}]}
    sandbox = governed(policy, command=["sh", "-c", WAIT_THEN_RUN, MODEL_CALL])
    tab = console()
    page = tab.login(f"#/sandbox/{sandbox['id']}")
    panel = page.locator(".panel-egress")
    expect(panel).to_contain_text("No connections or model calls yet")

    go = admin.post(f"/api/v1/sandboxes/{sandbox['id']}/exec", json={"command": ["touch", "/workspace/go"]})
    assert go.status_code == 200, go.text
    item = pending_for(admin, sandbox["id"])
    call = panel.locator(f'tbody tr[data-action-id="{item["action_id"]}"]')
    expect(call.locator(".badge")).to_have_text("pending")
    expect(call.locator(".egress-by")).to_have_attribute("href", f"#/approvals/{item['id']}")
    expect(call.locator('td[data-label="In"]')).to_have_text("—")

    assert decide(admin, item["id"], decision="approve").status_code == 200
    expect(call.locator(".badge")).to_have_text("allowed")
    expect(call.locator(".egress-by")).to_have_text("person")
    expect(call.locator('td[data-label="Tokens in / out"]')).to_have_text("11 / 5")
    expect(page.locator(".term-screen")).to_contain_text("model: Hello from the scripted model")
    expect(panel.locator(".egress-usage")).to_contain_text("Model requests 1 of 1,000")

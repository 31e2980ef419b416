"""Who may do what, and what is recorded: bearer tokens and roles (401, 403), the tokens
file re-read when it changes, tokens compared in constant time and never logged, open
mode bound to loopback; the audit trail of every management action; the `limit` cap;
cursor paging of job, dead-letter and audit listings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ADMIN_TOKEN, PRODUCER_TOKEN, SEED_BODIES, TOKENS, VIEWER_TOKEN, Api, StartApi, fail, run_jobs

import api.tokens
from api.server import LOOPBACK, bind_host, running_api
from api.tokens import Role, TokenFileError, TokenStore
from config import Settings
from config.api import ApiToken
from streams.admin import audit_key

ROTATED_TOKEN = "rotated-token-0a1b2c3d4e5f6a7b"


def write_tokens(path: Path, tokens: list[dict[str, str]]) -> None:
    """Replaces the file in one step, as a deployment would (a new inode)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(tokens))
    os.replace(tmp, path)


# -- 401 and 403 --------------------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", f"Basic {ADMIN_TOKEN}", "Bearer not-a-token-at-all",
                                    f"Bearer {ADMIN_TOKEN}x", f"Token {ADMIN_TOKEN}"])
async def test_a_missing_or_wrong_token_is_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for method, path in [("GET", "/api/jobs"), ("POST", "/api/jobs"), ("POST", "/api/queues/research"),
                         ("GET", "/api/audit"), ("GET", "/api/streams")]:
        async with api.client.request(method, path, headers=headers, json=SEED_BODIES["research"]) as response:
            body = await response.json()
            assert (response.status, body["error"]) == (401, "unauthorized"), (method, path, header)
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="tgjobs"'
    _, counts = await api.get("/api/jobs")
    assert counts["totalJobs"] == 0  # nothing was added


async def test_the_scheme_is_case_insensitive(api: Api) -> None:
    status, _ = await api.get("/api/jobs", token=False, headers={"Authorization": f"bearer {VIEWER_TOKEN}"})
    assert status == 200


@pytest.mark.parametrize("token, method, path, body, expected", [
    (VIEWER_TOKEN, "GET", "/api/jobs", None, 200),
    (VIEWER_TOKEN, "GET", "/api/queues/research?includeJobs=true", None, 200),
    (VIEWER_TOKEN, "GET", "/api/streams", None, 200),
    (VIEWER_TOKEN, "GET", "/api/audit", None, 200),
    (VIEWER_TOKEN, "GET", "/api/queues/research/dead", None, 200),
    (VIEWER_TOKEN, "POST", "/api/jobs", SEED_BODIES["research"], 403),
    (VIEWER_TOKEN, "POST", "/api/queues/research", {"action": "pause"}, 403),
    (PRODUCER_TOKEN, "POST", "/api/jobs", SEED_BODIES["research"], 201),
    (PRODUCER_TOKEN, "POST", "/api/jobs", SEED_BODIES["signal"], 201),
    (PRODUCER_TOKEN, "GET", "/api/jobs", None, 200),
    (PRODUCER_TOKEN, "POST", "/api/queues/research", {"action": "pause"}, 403),
    (PRODUCER_TOKEN, "DELETE", "/api/queues/research?status=failed", None, 403),
    (PRODUCER_TOKEN, "POST", "/api/queues/research/dead", {"action": "purge"}, 403),
    (PRODUCER_TOKEN, "DELETE", "/api/jobs/research-01NOSUCHJOB?action=remove", None, 403),
    (ADMIN_TOKEN, "POST", "/api/queues/research", {"action": "pause"}, 200),
    (ADMIN_TOKEN, "POST", "/api/queues/research/dead", {"action": "purge"}, 200),
])
async def test_each_role_may_do_what_it_allows(api: Api, token: str, method: str, path: str, body: Any,
                                               expected: int) -> None:
    status, answer = await api.call(method, path, token=token, **({"json": body} if body is not None else {}))
    assert status == expected, answer
    if expected == 403:
        assert answer["error"] == "forbidden" and "needs" in answer["message"]


async def test_a_role_too_low_changes_nothing(api: Api) -> None:
    await api.post("/api/queues/research", {"action": "pause"}, token=PRODUCER_TOKEN)
    _, queue = await api.get("/api/queues/research")
    assert queue["paused"] is False
    _, audit = await api.get("/api/audit")
    assert audit["entries"] == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/openapi.json"])
async def test_health_readiness_and_the_document_are_open(api: Api, path: str) -> None:
    status, _ = await api.get(path, token=None)
    assert status == 200


async def test_tokens_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-token-9f8e7d6c5b4a3f2e1d"
    with caplog.at_level(logging.DEBUG):
        await api.get("/api/jobs", token=wrong)
        await api.get("/api/jobs", token=ADMIN_TOKEN)
        await api.post("/api/queues/research", {"action": "pause"}, token=PRODUCER_TOKEN)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "unknown token" in text  # the rejection is logged, without the token
    assert all(t not in text for t in (wrong, ADMIN_TOKEN, PRODUCER_TOKEN, VIEWER_TOKEN))
    assert all(t["token"] not in repr(api.settings) for t in TOKENS)


# -- the tokens file ------------------------------------------------------------------------

async def test_the_tokens_file_is_reread_when_it_changes(start_api: StartApi, make_settings: Callable[..., Settings],
                                                          tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.json"
    write_tokens(path, [{"name": "ops", "role": "admin", "token": ADMIN_TOKEN}])
    api = await start_api(make_settings(api_tokens_file=path))
    assert (await api.get("/api/jobs", token=ADMIN_TOKEN))[0] == 200
    assert (await api.get("/api/jobs", token=ROTATED_TOKEN))[0] == 401

    # Rotation: the new token works at once, the old one no longer; no restart.
    write_tokens(path, [{"name": "ops-2", "role": "viewer", "token": ROTATED_TOKEN}])
    assert (await api.get("/api/jobs", token=ROTATED_TOKEN))[0] == 200
    assert (await api.get("/api/jobs", token=ADMIN_TOKEN))[0] == 401
    assert (await api.post("/api/queues/research", {"action": "pause"}, token=ROTATED_TOKEN))[0] == 403

    # A broken rewrite keeps the tokens read before, and says so (without quoting a token).
    with caplog.at_level(logging.ERROR, logger="api.tokens"):
        path.write_text('[{"name": "ops", "role": "admin", "token": "')
        assert (await api.get("/api/jobs", token=ROTATED_TOKEN))[0] == 200
        write_tokens(path, [{"name": "short", "role": "admin", "token": "tooshort"}])
        assert (await api.get("/api/jobs", token=ROTATED_TOKEN))[0] == 200
        path.unlink()
        assert (await api.get("/api/jobs", token=ROTATED_TOKEN))[0] == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "api.tokens"]
    assert len(messages) == 3 and all("keeping the tokens read before" in m for m in messages)
    assert all("tooshort" not in m for m in messages)


def test_an_unreadable_tokens_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="API_TOKENS_FILE"):
        TokenStore([], tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps([{"name": "a", "role": "root", "token": "x" * 20}]))
    with pytest.raises(TokenFileError, match="role"):
        TokenStore([], tmp_path / "bad.json")


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured token is compared, matching or not, as equal-length digests."""
    tokens = [ApiToken.model_validate(t) for t in TOKENS]
    store = TokenStore(tokens, None)
    compared: list[tuple[int, int]] = []
    real = api.tokens.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(api.tokens.hmac, "compare_digest", spy)
    for presented, expected in [(ADMIN_TOKEN, ("ops", Role.ADMIN)), (VIEWER_TOKEN, ("dashboard", Role.VIEWER)),
                                ("x", None), ("y" * 500, None)]:
        compared.clear()
        principal = store.authenticate(presented)
        assert (principal and (principal.name, principal.role)) == expected or principal is expected
        assert compared == [(hashlib.sha256().digest_size,) * 2] * len(tokens)


# -- open mode ------------------------------------------------------------------------------

def test_open_mode_binds_loopback_unless_allowed(make_settings: Callable[..., Settings],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    open_settings = make_settings()
    assert open_settings.api_open
    with caplog.at_level(logging.WARNING, logger="api.server"):
        assert bind_host(open_settings, "0.0.0.0") == LOOPBACK
    assert "API_ALLOW_OPEN" in caplog.text
    for host in ("127.0.0.1", "localhost", "::1"):
        assert bind_host(open_settings, host) == host
    assert bind_host(make_settings(api_allow_open=True), "0.0.0.0") == "0.0.0.0"
    assert bind_host(make_settings(api_tokens=TOKENS), "0.0.0.0") == "0.0.0.0"


async def test_open_mode_says_so_at_start_and_lets_every_caller_in(make_settings: Callable[..., Settings],
                                                                   start_api: StartApi,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings()
    with caplog.at_level(logging.WARNING, logger="api.server"):
        async with running_api(settings, "0.0.0.0", 0) as url:
            assert url.startswith(f"http://{LOOPBACK}:")
    assert "OPEN: no token is configured" in caplog.text

    api = await start_api(settings)
    assert (await api.post("/api/queues/research", {"action": "pause"}, token=None))[0] == 200
    _, audit = await api.get("/api/audit", token=None)
    assert [(e["who"], e["action"]) for e in audit["entries"]] == [("anonymous", "pause")]


# -- the audit trail --------------------------------------------------------------------------

async def test_every_management_action_is_audited(api: Api) -> None:
    removed, retried = await api.add(), await api.add(companyId="bad_1", companyName="Acme")
    await api.delete(f"/api/jobs/{removed}?action=remove")
    await run_jobs(api.settings, fail)
    assert (await api.delete(f"/api/jobs/{retried}?action=retry"))[0] == 200
    await run_jobs(api.settings, fail)
    steps = [("POST", "/api/queues/research", {"action": "pause"}),
             ("POST", "/api/queues/research", {"action": "resume"}),
             ("POST", "/api/queues/research", {"action": "clean", "options": {"type": "failed"}}),
             ("POST", "/api/queues/research/dead", {"action": "replay", "ids": [retried]}),
             ("POST", "/api/queues/research/dead", {"action": "purge"})]
    for method, path, body in steps:
        status, answer = await api.call(method, path, json=body, headers={"X-Request-Id": f"req-{body['action']}"})
        assert status == 200, answer
    await api.delete(f"/api/queues/research?jobIds={retried}")
    await api.get("/api/jobs")  # reads are not audited

    status, audit = await api.get("/api/audit", token=VIEWER_TOKEN)
    assert status == 200 and audit["nextCursor"] is None
    entries = audit["entries"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("remove", "research"), ("purge", "research"), ("replay", "research"), ("clean", "research"),
        ("resume", "research"), ("pause", "research"), ("retry", retried), ("remove", removed)]
    assert all((e["who"], e["role"]) == ("ops", "admin") for e in entries)
    by_action = {e["action"]: e for e in entries[1:]}
    assert by_action["pause"]["effect"] == {"paused": True} and by_action["pause"]["requestId"] == "req-pause"
    assert by_action["clean"]["params"] == {"grace": 0, "limit": 1000, "type": "failed"}
    assert by_action["clean"]["effect"] == {"removed": 1}
    assert (by_action["replay"]["params"], by_action["replay"]["effect"]) == ({"ids": 1}, {"replayed": 1})
    assert by_action["retry"]["effect"] == {"status": "waiting"}
    assert entries[0]["params"] == {"jobIds": 1} and entries[0]["effect"]["removed"] == 1
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)


async def test_the_audit_stream_is_capped(start_api: StartApi, make_settings: Callable[..., Settings],
                                          engine_redis: Any) -> None:
    api = await start_api(make_settings(api_tokens=TOKENS, api_audit_max_len=10))
    for n in range(300):
        await api.post("/api/queues/research", {"action": "pause" if n % 2 == 0 else "resume"})
    assert await engine_redis.xlen(audit_key(api.settings.key_prefix)) < 300  # trimmed (approximately)


# -- limits and paging --------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/queues/research?includeJobs=true", "/api/queues/research/dead", "/api/audit"])
async def test_limit_is_capped_at_1000(api: Api, path: str) -> None:
    assert (await api.get(f"{path}{'&' if '?' in path else '?'}limit=1000"))[0] == 200
    status, body = await api.get(f"{path}{'&' if '?' in path else '?'}limit=1001")
    assert status == 422 and body["details"][0]["path"] == ["limit"]


async def collect_pages(api: Api, path: str, items: str, id_field: str) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        status, page = await api.get(path + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        pages.append([item[id_field] for item in page[items]])
        cursor = page["nextCursor"]
        if cursor is None:
            return pages


async def test_cursor_paging_of_jobs_dead_letters_and_audit(api: Api) -> None:
    failed = [await api.add(companyId=f"bad_{n}", companyName="Acme") for n in range(5)]
    await run_jobs(api.settings, fail)
    waiting = [await api.add() for _ in range(2)]

    pages = await collect_pages(api, "/api/queues/research?includeJobs=true&limit=3", "jobs", "id")
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = sum(pages, [])
    # Waiting (newest first), then failed (by finish time, which the worker decides): each once.
    assert listed[:2] == waiting[::-1] and sorted(listed[2:]) == sorted(failed)

    pages = await collect_pages(api, "/api/queues/research?includeJobs=true&status=failed&limit=2", "jobs", "id")
    assert sorted(sum(pages, [])) == sorted(failed) and [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == listed[2:]

    pages = await collect_pages(api, "/api/queues/research/dead?limit=2", "items", "jobId")
    assert sorted(sum(pages, [])) == sorted(failed) and [len(p) for p in pages] == [2, 2, 1]

    for n in range(5):
        await api.post("/api/queues/research", {"action": "pause" if n % 2 == 0 else "resume"})
    pages = await collect_pages(api, "/api/audit?limit=2", "entries", "action")
    assert pages == [["pause", "resume"], ["pause", "resume"], ["pause"]]


async def test_paging_after_the_last_entry_and_bad_cursors(api: Api) -> None:
    # Found by the fuzz test: these were 500s.
    assert await api.get("/api/audit?cursor=0-0") == (200, {"entries": [], "nextCursor": None})
    status, body = await api.get("/api/queues/research/dead?cursor=0-0")
    assert (status, body["items"]) == (200, [])
    for path in ("/api/audit?cursor=5-61167901407875549795", "/api/queues/research/dead?cursor=1-99999999999999999999"):
        status, body = await api.get(path)
        assert status == 422 and body["details"][0]["path"] == ["cursor"], body


async def test_a_thousand_job_ids_fit_in_the_query(api: Api) -> None:
    # Found by the fuzz test: a jobIds list the document allows was refused by the HTTP parser.
    ids = [await api.add() for _ in range(3)] + [f"research-01NOSUCHJOB{n:016d}" for n in range(997)]
    status, body = await api.delete(f"/api/queues/research?jobIds={','.join(ids)}")
    assert status == 200, body
    assert (len(body["removed"]), len(body["notFound"])) == (3, 997)

"""A local Slack for slack_sdk's real clients: Web API, Socket Mode websocket, response_url, webhook.

It speaks Slack's wire protocol (the shapes of api.slack.com's Socket Mode and interactivity docs,
and of slack_sdk's own tests/slack_sdk/socket_mode/mock_socket_mode_server.py):

* ``POST /api/auth.test`` and ``POST /api/apps.connections.open`` (the latter, with an ``xapp-``
  token, answers a ``ws://`` URL to this server);
* ``GET /link``: the Socket Mode websocket. It says ``hello``; the test pushes ``slash_commands``,
  ``interactive`` and ``events_api`` envelopes; the client's acks are recorded with the time they
  arrived; ``disconnect`` (reason ``refresh_requested``) makes the client fetch a new URL;
* ``POST /response/<id>``: the ``response_url`` of each command or click, recording what arrives;
* ``POST /api/chat.postMessage`` (a ``ts`` each; ``thread_ts`` for a reply) and ``POST /api/chat.update``
  (the message of that ``ts`` edited): checked for Block Kit's limits and kept in ``messages`` by
  ts, with every call in ``chat_calls``; a channel in ``outside`` answers ``not_in_channel``;
  ``chat_script`` answers the next calls of a method as scripted (an error, ``(429, seconds)``, or
  ``"lost"``: the post is taken and the connection dropped before the answer; ``"lost in thread"``:
  the next reply's);
* ``GET /api/conversations.history`` and ``conversations.replies``: a channel's messages (with
  their ``metadata`` when ``include_all_metadata``), as a retried post reads them back;
* ``POST /api/chat.postEphemeral``: a message one user sees, recorded in ``ephemerals``;
* ``POST /api/views.publish``: recorded;
* ``POST /api/views.open`` and ``POST /api/views.update``: a modal, checked as Slack would (slack_sdk's
  own models: a title of 24 characters at most…), kept in ``modals`` by view ID; the test then
  types into it (``type_in``) or submits it (``submit``), as a user would;
* ``GET /api/usergroups.users.list``: the members of ``groups[id]``; ``group_errors[id]`` answers
  that error instead (``missing_scope``, ``no_such_subteam``);
* ``POST /hooks/<id>``: an incoming webhook.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.blockkit import problems

BOT_TOKEN = "xoxb-17-4242-SIMULATEDBOTTOKEN"
APP_TOKEN = "xapp-1-A0SIM-4242-SIMULATEDAPPTOKEN"
TEAM = "T0SIM"
APP_ID = "A0SIM"


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    at: float  # time.monotonic() when it arrived


@dataclass
class Envelope:
    envelope_id: str
    sent_at: float
    response_id: str


@dataclass
class SlackSimulator:
    base: str = ""
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    acks: dict[str, Ack] = field(default_factory=dict)
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    posted: list[dict[str, Any]] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)
    webhook: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)  # broke Block Kit's limits
    connections_opened: int = 0
    hellos: int = 0
    api_calls: list[str] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)  # user group ID -> its members
    modals: dict[str, dict[str, Any]] = field(default_factory=dict)  # view ID -> the view as last opened/updated
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # ts -> the channel message as it is now
    chat_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (method, body), in order
    chat_script: list[tuple[str, Any]] = field(default_factory=list)  # (method, error | (429, seconds))
    outside: set[str] = field(default_factory=set)  # channels the bot is not in
    ephemerals: list[dict[str, Any]] = field(default_factory=list)  # chat.postEphemeral: seen by one user
    unreadable: set[str] = field(default_factory=set)  # channels whose history the app may not read
    modal_updates: int = 0
    group_errors: dict[str, str] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> SlackSimulator:
        app = web.Application()
        app.router.add_post("/api/auth.test", self._auth_test)
        app.router.add_post("/api/apps.connections.open", self._connections_open)
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/chat.update", self._update_message)
        app.router.add_post("/api/chat.postEphemeral", self._post_ephemeral)
        app.router.add_post("/api/views.publish", self._views_publish)
        app.router.add_post("/api/views.open", self._views_open)
        app.router.add_post("/api/views.update", self._views_update)
        app.router.add_route("*", "/api/usergroups.users.list", self._usergroup_members)  # slack_sdk GETs it
        app.router.add_route("*", "/api/conversations.history", self._history)
        app.router.add_route("*", "/api/conversations.replies", self._history)
        app.router.add_get("/link", self._link)
        app.router.add_post("/response/{id}", self._response)
        app.router.add_post("/hooks/{tail:.*}", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.base}/hooks/T0SIM/B0SIM/SIMULATEDHOOKSECRET"

    # -- Web API ----------------------------------------------------------------------------

    def _token(self, request: web.Request, form: dict[str, Any]) -> str:
        header = request.headers.get("Authorization", "")
        return header.removeprefix("Bearer ").strip() or str(form.get("token", ""))

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        return dict(await request.post())

    async def _auth_test(self, request: web.Request) -> web.Response:
        self.api_calls.append("auth.test")
        if self._token(request, await self._body(request)) != BOT_TOKEN:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "url": "https://sim.slack.com/", "team": "sim", "user": "foojob",
                                  "team_id": TEAM, "user_id": "U0FOOJOB", "bot_id": "B0FOOJOB",
                                  "is_enterprise_install": False})

    async def _connections_open(self, request: web.Request) -> web.Response:
        self.api_calls.append("apps.connections.open")
        if self._token(request, await self._body(request)) != APP_TOKEN:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        self.connections_opened += 1
        return web.json_response({"ok": True, "url": f"ws{self.base[4:]}/link?ticket={uuid.uuid4()}"})

    def _scripted(self, method: str) -> web.Response | None:
        for i, (scripted, answer) in enumerate(self.chat_script):
            if scripted == method and answer not in ("lost", "lost in thread"):  # (those: _lose_next)
                del self.chat_script[i]
                if isinstance(answer, tuple):
                    return web.json_response({"ok": False, "error": "ratelimited"}, status=answer[0],
                                             headers={"Retry-After": str(answer[1])})
                return web.json_response({"ok": False, "error": answer})
        return None

    async def _chat(self, request: web.Request, method: str) -> tuple[dict[str, Any], web.Response | None]:
        self.api_calls.append(method)
        body = await self._body(request)
        self.chat_calls.append((method, body))
        if self._token(request, body) != BOT_TOKEN:
            return body, web.json_response({"ok": False, "error": "invalid_auth"})
        if (scripted := self._scripted(method)) is not None:
            return body, scripted
        if body.get("channel") in self.outside:
            return body, web.json_response({"ok": False, "error": "not_in_channel"})
        blocks = body.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if self._blocks_problem(blocks, body.get("text")):
            self.refused.append(body)
            return body, web.json_response({"ok": False, "error": "invalid_blocks"})
        return body, None

    async def _post_message(self, request: web.Request) -> web.Response:
        lost = self._lose_next("chat.postMessage", await self._body(request))
        body, refusal = await self._chat(request, "chat.postMessage")
        if refusal is not None:
            return refusal
        self.posted.append(body)
        if body.get("thread_ts") and body["thread_ts"] not in self.messages:
            return web.json_response({"ok": False, "error": "thread_not_found"})
        ts = f"{time.time():.6f}"
        while ts in self.messages:  # one ts a message
            ts = f"{float(ts) + 0.000001:.6f}"
        self.messages[ts] = {**body, "ts": ts}
        if lost:  # Slack took the message; its answer never reaches the client
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)  # written to a closed connection: nobody reads it
        return web.json_response({"ok": True, "channel": body.get("channel"), "ts": ts})

    async def _post_ephemeral(self, request: web.Request) -> web.Response:
        body, refusal = await self._chat(request, "chat.postEphemeral")
        if refusal is not None:
            return refusal
        if not body.get("user"):
            return web.json_response({"ok": False, "error": "user_not_in_channel"})
        self.ephemerals.append(body)
        return web.json_response({"ok": True, "message_ts": f"{time.time():.6f}"})

    def _lose_next(self, method: str, body: dict[str, Any]) -> bool:
        """Whether the script says this call's answer is lost (``(method, "lost")``; ``"lost in
        thread"``: the next reply's): the message is taken, and the connection dropped before the
        answer."""
        for i, (scripted, answer) in enumerate(self.chat_script):
            if answer == "lost in thread" and not body.get("thread_ts"):
                continue
            if scripted == method:
                if answer in ("lost", "lost in thread"):
                    del self.chat_script[i]
                    return True
                return False
        return False

    async def _history(self, request: web.Request) -> web.Response:
        """``conversations.history`` (a channel's messages, newest first, no thread replies) and
        ``conversations.replies`` (a thread, oldest first), after ``oldest``; a message's
        ``metadata`` only with ``include_all_metadata``. Needs the history scope: a channel in
        ``unreadable`` answers ``missing_scope``."""
        method = request.path.rsplit("/", 1)[1]
        self.api_calls.append(method)
        form = {**request.query, **(await self._body(request) if request.method == "POST" else {})}
        if self._token(request, form) != BOT_TOKEN:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        channel = form.get("channel")
        if channel in self.unreadable:
            return web.json_response({"ok": False, "error": "missing_scope", "needed": "channels:history"})
        oldest = float(form.get("oldest") or 0)
        metadata = str(form.get("include_all_metadata", "")).lower() in ("true", "1")
        found = [m for m in self.messages.values() if m.get("channel") == channel and float(m["ts"]) > oldest]
        if method == "conversations.replies":
            thread = str(form.get("ts", ""))
            found = sorted((m for m in found if m["ts"] == thread or m.get("thread_ts") == thread),
                           key=lambda m: float(m["ts"]))
        else:
            found = sorted((m for m in found if not m.get("thread_ts")), key=lambda m: -float(m["ts"]))
        shown = [{"type": "message", "ts": m["ts"], "text": m.get("text", ""),
                  **({"metadata": m["metadata"]} if metadata and m.get("metadata") else {})} for m in found]
        return web.json_response({"ok": True, "messages": shown, "has_more": False,
                                  "response_metadata": {"next_cursor": ""}})

    async def _update_message(self, request: web.Request) -> web.Response:
        body, refusal = await self._chat(request, "chat.update")
        if refusal is not None:
            return refusal
        ts = str(body.get("ts", ""))
        if ts not in self.messages or self.messages[ts].get("channel") != body.get("channel"):
            return web.json_response({"ok": False, "error": "message_not_found"})
        self.messages[ts] = {**self.messages[ts], **body, "edits": self.messages[ts].get("edits", 0) + 1}
        return web.json_response({"ok": True, "channel": body.get("channel"), "ts": ts})

    @staticmethod
    def _blocks_problem(blocks: list[dict[str, Any]], text: str | None, *, view: bool = False) -> bool:
        """Whether Slack would refuse these blocks: Block Kit's limits (tests/blockkit.py) and
        slack_sdk's own models of each block."""
        from slack_sdk.errors import SlackObjectFormationError
        from slack_sdk.models.blocks import Block

        if problems(blocks, view=view, text=text):
            return True
        try:
            for block in blocks:
                parsed = Block.parse(block)
                if parsed is None:
                    return True
                parsed.validate_json()
        except (SlackObjectFormationError, TypeError, KeyError):
            return True
        return False

    def _modal_problem(self, view: dict[str, Any]) -> str | None:
        from slack_sdk.errors import SlackObjectFormationError
        from slack_sdk.models.views import View

        if problems(view.get("blocks", []), view=True):
            return "invalid_blocks"
        try:
            View(**view).validate_json()
        except (SlackObjectFormationError, TypeError) as exc:
            return f"invalid_arguments: {exc}"
        return None

    async def _views_open(self, request: web.Request) -> web.Response:
        self.api_calls.append("views.open")
        body = await self._body(request)
        view = json.loads(body["view"]) if isinstance(body.get("view"), str) else body.get("view") or {}
        if not str(body.get("trigger_id", "")).startswith("trig."):
            return web.json_response({"ok": False, "error": "invalid_trigger_id"})
        if (problem := self._modal_problem(view)) is not None:
            self.refused.append(view)
            return web.json_response({"ok": False, "error": problem})
        view_id = f"VM{len(self.modals) + 1}"
        self.modals[view_id] = {**view, "id": view_id, "hash": "m1"}
        return web.json_response({"ok": True, "view": self.modals[view_id]})

    async def _views_update(self, request: web.Request) -> web.Response:
        self.api_calls.append("views.update")
        body = await self._body(request)
        view = json.loads(body["view"]) if isinstance(body.get("view"), str) else body.get("view") or {}
        current = self.modals.get(str(body.get("view_id")))
        if current is None:
            return web.json_response({"ok": False, "error": "not_found"})
        if body.get("hash") and body["hash"] != current["hash"]:
            return web.json_response({"ok": False, "error": "hash_conflict"})
        if (problem := self._modal_problem(view)) is not None:
            self.refused.append(view)
            return web.json_response({"ok": False, "error": problem})
        self.modal_updates += 1
        self.modals[current["id"]] = {**view, "id": current["id"], "hash": f"m{self.modal_updates + 1}",
                                      "state": current.get("state", {})}
        return web.json_response({"ok": True, "view": self.modals[current["id"]]})

    async def _usergroup_members(self, request: web.Request) -> web.Response:
        self.api_calls.append("usergroups.users.list")
        body = dict(request.query) if request.method == "GET" else await self._body(request)
        if self._token(request, body) != BOT_TOKEN:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        group = str(body.get("usergroup", ""))
        if group in self.group_errors:
            return web.json_response({"ok": False, "error": self.group_errors[group]})
        if group not in self.groups:
            return web.json_response({"ok": False, "error": "no_such_subteam"})
        return web.json_response({"ok": True, "users": self.groups[group]})

    async def _views_publish(self, request: web.Request) -> web.Response:
        self.api_calls.append("views.publish")
        body = await self._body(request)
        if isinstance(body.get("view"), str):
            body["view"] = json.loads(body["view"])
        if self._blocks_problem(body["view"].get("blocks", []), None, view=True):
            self.refused.append(body)
            return web.json_response({"ok": False, "error": "invalid_blocks"})
        body["hash"] = f"h{len(self.published) + 1}"  # a new version of the view each time
        self.published.append(body)
        return web.json_response({"ok": True, "view": {"id": "V0SIM", "hash": body["hash"], **body["view"]}})

    async def _response(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self._blocks_problem(body.get("blocks", []), body.get("text")):
            self.refused.append(body)
            return web.Response(status=400, text="invalid_blocks")
        self.responses.setdefault(request.match_info["id"], []).append(body)
        return web.Response(text="ok")

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self._blocks_problem(body.get("blocks", []), body.get("text")):
            self.refused.append(body)
            return web.Response(status=400, text="invalid_blocks")
        self.webhook.append(body)
        return web.Response(text="ok")

    # -- Socket Mode ------------------------------------------------------------------------

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets),
                            "debug_info": {"host": "sim", "approximate_connection_time": 18060},
                            "connection_info": {"app_id": APP_ID}})
        self.hellos += 1
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    data = json.loads(message.data)
                    if "envelope_id" in data:
                        self.acks[data["envelope_id"]] = Ack(data["envelope_id"], data.get("payload"),
                                                             time.monotonic())
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
        return ws

    def connected(self) -> bool:
        return any(not ws.closed for ws in self.sockets)

    async def _push(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool,
                    socket: int = -1) -> Envelope:
        """Send an envelope over one Socket Mode connection: the newest, or ``socket`` (their index in
        the order they connected: with several replicas, which one Slack picks)."""
        live = [ws for ws in self.sockets if not ws.closed]
        if not live:
            raise AssertionError("no Socket Mode connection to push to")
        envelope_id = str(uuid.uuid4())
        sent = time.monotonic()
        await live[socket].send_json({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                  "accepts_response_payload": accepts_response_payload, "retry_attempt": 0,
                                  "retry_reason": ""})
        return Envelope(envelope_id, sent, payload.get("response_url", "").rsplit("/", 1)[-1])

    async def command(self, text: str, *, user: str = "U0ALICE", channel: str = "C0OPS", socket: int = -1) -> Envelope:
        rid = f"cmd{next(self._ids)}"
        payload = {
            "token": "legacy-verification-token", "team_id": TEAM, "team_domain": "sim",
            "channel_id": channel, "channel_name": "ops", "user_id": user, "user_name": user.lower(),
            "command": "/foojob", "text": text, "api_app_id": APP_ID, "is_enterprise_install": "false",
            "response_url": f"{self.base}/response/{rid}", "trigger_id": f"trig.{rid}",
        }
        return await self._push("slash_commands", payload, accepts_response_payload=True, socket=socket)

    async def click(self, action_id: str, value: str, *, user: str = "U0ALICE", channel: str = "C0OPS",
                    message_ts: str = "1700000000.000100", ephemeral: bool = False) -> Envelope:
        """A click on a button of a message (an ephemeral one carries no ``message``)."""
        rid = f"act{next(self._ids)}"
        payload: dict[str, Any] = {
            "type": "block_actions", "team": {"id": TEAM, "domain": "sim"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM}, "api_app_id": APP_ID,
            "token": "legacy-verification-token", "trigger_id": f"trig.{rid}",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": ephemeral},
            "channel": {"id": channel, "name": "ops"}, "state": {"values": {}},
            "response_url": f"{self.base}/response/{rid}",
            "actions": [self._action(action_id, value)],
        }
        if not ephemeral:
            payload["message"] = {"type": "message", "ts": message_ts, "text": "foojob", "blocks": []}
        return await self._push("interactive", payload, accepts_response_payload=False)

    async def click_home(self, action_id: str, value: str, *, user: str = "U0ALICE") -> Envelope:
        """A click on a button of the Home tab: the payload names the view and has no response_url."""
        last = next((p for p in reversed(self.published) if p["user_id"] == user), None)
        view_id, view_hash = ("V0SIM", last["hash"]) if last else ("V0SIM", "h0")
        payload = {
            "type": "block_actions", "team": {"id": TEAM, "domain": "sim"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM}, "api_app_id": APP_ID,
            "token": "legacy-verification-token", "trigger_id": f"trig.home{next(self._ids)}",
            "container": {"type": "view", "view_id": view_id},
            "view": {"id": view_id, "type": "home", "hash": view_hash, "blocks": [], "state": {"values": {}}},
            "actions": [self._action(action_id, value)],
        }
        return await self._push("interactive", payload, accepts_response_payload=False)

    @staticmethod
    def _action(action_id: str, value: str) -> dict[str, Any]:
        return {"action_id": action_id, "block_id": "b1", "value": value, "type": "button",
                "action_ts": f"{time.time():.6f}", "text": {"type": "plain_text", "text": action_id}}

    async def open_home(self, *, user: str = "U0ALICE") -> Envelope:
        payload = {
            "token": "legacy-verification-token", "team_id": TEAM, "api_app_id": APP_ID,
            "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home",
                      "event_ts": f"{time.time():.6f}"},
            "type": "event_callback", "event_id": f"Ev{next(self._ids)}", "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": "U0FOOJOB", "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        return await self._push("events_api", payload, accepts_response_payload=False)

    def _view_payload(self, view_id: str, user: str, values: dict[str, dict[str, Any]]) -> dict[str, Any]:
        view = self.modals[view_id]
        state = {"values": values}
        self.modals[view_id] = {**view, "state": state}
        return {"id": view_id, "team_id": TEAM, "type": "modal", "callback_id": view.get("callback_id"),
                "private_metadata": view.get("private_metadata", ""), "hash": view["hash"], "state": state,
                "blocks": view.get("blocks", []), "title": view.get("title")}

    async def type_in(self, view_id: str, block_id: str, action_id: str, text: str,
                      values: dict[str, dict[str, Any]], *, user: str = "U0ALICE") -> Envelope:
        """Typing in a modal's input that dispatches its actions: a ``block_actions`` from the view,
        with the state so far (``values``, this text included)."""
        payload = {
            "type": "block_actions", "team": {"id": TEAM, "domain": "sim"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM}, "api_app_id": APP_ID,
            "token": "legacy-verification-token", "trigger_id": f"trig.type{next(self._ids)}",
            "container": {"type": "view", "view_id": view_id},
            "view": self._view_payload(view_id, user, values),
            "actions": [{"action_id": action_id, "block_id": block_id, "type": "plain_text_input", "value": text,
                         "action_ts": f"{time.time():.6f}"}],
        }
        return await self._push("interactive", payload, accepts_response_payload=False)

    async def submit(self, view_id: str, values: dict[str, dict[str, Any]], *, user: str = "U0ALICE",
                     private_metadata: str | None = None) -> Envelope:
        """A modal's submit button: a ``view_submission`` whose ack may carry ``response_action``.
        ``private_metadata``: what a forged payload would claim instead of the view's own."""
        view = self._view_payload(view_id, user, values)
        if private_metadata is not None:
            view["private_metadata"] = private_metadata
        payload = {"type": "view_submission", "team": {"id": TEAM, "domain": "sim"},
                   "user": {"id": user, "username": user.lower(), "team_id": TEAM}, "api_app_id": APP_ID,
                   "token": "legacy-verification-token", "trigger_id": f"trig.submit{next(self._ids)}",
                   "view": view, "response_urls": []}
        return await self._push("interactive", payload, accepts_response_payload=True)

    async def members_changed(self, group: str, *, socket: int = -1) -> Envelope:
        """Slack's ``subteam_members_changed`` event: a user group's members changed."""
        payload = {
            "token": "legacy-verification-token", "team_id": TEAM, "api_app_id": APP_ID,
            "event": {"type": "subteam_members_changed", "subteam_id": group, "team_id": TEAM,
                      "date_previous_update": int(time.time()) - 60, "date_update": int(time.time()),
                      "added_users": [], "added_users_count": "0", "removed_users": [], "removed_users_count": "1",
                      "event_ts": f"{time.time():.6f}"},
            "type": "event_callback", "event_id": f"Ev{next(self._ids)}", "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": "U0FOOJOB", "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        return await self._push("events_api", payload, accepts_response_payload=False, socket=socket)

    async def refresh(self) -> None:
        """Ask every client to reconnect, as Slack does a few times an hour."""
        for ws in list(self.sockets):
            if not ws.closed:
                await ws.send_json({"type": "disconnect", "reason": "refresh_requested",
                                    "debug_info": {"host": "sim"}})

    async def drop(self) -> None:
        """Close every socket from the server's side (a network blip)."""
        for ws in list(self.sockets):
            await ws.close()

    def ack_for(self, envelope: Envelope) -> Ack | None:
        return self.acks.get(envelope.envelope_id)

    def responses_for(self, envelope: Envelope) -> list[dict[str, Any]]:
        return self.responses.get(envelope.response_id, [])


async def started_simulator() -> SlackSimulator:
    return await SlackSimulator().start()


__all__ = ["APP_TOKEN", "BOT_TOKEN", "SlackSimulator", "asyncio"]

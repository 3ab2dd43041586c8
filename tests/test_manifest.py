"""manifest.yml: valid against Slack's app manifest schema (v1), and what foojob needs of it.

The schema below restates the constraints of Slack's published manifest schema (v1.0.0, the one
``_metadata.major_version: 1`` selects: slackapi/manifest-schema) for the parts foojob uses, with
``additionalProperties: false`` as there, so a misspelt key fails as it would in Slack's form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
URL = {"type": "string", "pattern": r"^https?://", "maxLength": 3500}
EVENTS = {"type": "array", "items": {"type": "string", "maxLength": 50}, "maxItems": 100, "uniqueItems": True}
SCOPES = {"type": "array", "items": {"type": "string", "maxLength": 50}, "maxItems": 255}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


SCHEMA = _object({
    "_metadata": _object({"major_version": {"type": "integer"}, "minor_version": {"type": "integer"}}),
    "display_information": _object({
        "name": {"type": "string", "minLength": 1, "maxLength": 35},
        "description": {"type": "string", "minLength": 1, "maxLength": 140},
        "long_description": {"type": "string", "minLength": 175, "maxLength": 4000},
        "background_color": {"type": "string", "pattern": r"^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$"},
    }, ("name",)),
    "features": _object({
        "app_home": _object({"home_tab_enabled": {"type": "boolean"}, "messages_tab_enabled": {"type": "boolean"},
                             "messages_tab_read_only_enabled": {"type": "boolean"}}),
        "bot_user": _object({"display_name": {"type": "string", "minLength": 1, "maxLength": 80},
                             "always_online": {"type": "boolean"}}, ("display_name",)),
        "slash_commands": {"type": "array", "minItems": 1, "maxItems": 50, "items": _object({
            "command": {"type": "string", "minLength": 2, "maxLength": 32, "pattern": "^/"},
            "url": {"type": "string", "pattern": r"^https?://", "maxLength": 3000},
            "description": {"type": "string", "minLength": 1, "maxLength": 2000},
            "usage_hint": {"type": "string", "minLength": 1, "maxLength": 1000},
            "should_escape": {"type": "boolean"},
        }, ("command", "description"))},
    }),
    "oauth_config": _object({"scopes": _object({"bot": SCOPES, "user": SCOPES}),
                             "redirect_urls": {"type": "array", "items": {"type": "string"}}}),
    "settings": _object({
        "event_subscriptions": _object({"request_url": URL, "bot_events": EVENTS, "user_events": EVENTS}),
        "interactivity": _object({"is_enabled": {"type": "boolean"}, "request_url": URL,
                                  "message_menu_options_url": URL}, ("is_enabled",)),
        "org_deploy_enabled": {"type": "boolean"},
        "socket_mode_enabled": {"type": "boolean"},
        "token_rotation_enabled": {"type": "boolean"},
    }),
}, ("display_information",))


def manifest() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "manifest.yml").read_text()))


def test_manifest_is_valid_against_the_schema() -> None:
    jsonschema.validate(manifest(), SCHEMA)


def test_the_schema_would_catch_a_mistake() -> None:
    broken = manifest()
    broken["settings"]["socket_mode"] = True  # a misspelt key
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(broken))
    assert errors and "socket_mode" in errors[0].message


def test_manifest_has_what_foojob_needs() -> None:
    m = manifest()
    assert m["settings"]["socket_mode_enabled"] is True
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert "request_url" not in m["settings"]["interactivity"]  # Socket Mode: no public URL
    # The Home tab; a user group's members read again at once when they change (roles).
    assert m["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened", "subteam_members_changed"]
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    [command] = m["features"]["slash_commands"]
    assert command["command"] == "/foojob" and "url" not in command
    # chat:write.public: post cards in a public channel the bot has not joined (SLACK_CHANNEL);
    # usergroups:read: the members of the user groups in SLACK_ALLOWED_USERS / SLACK_SCHEDULERS;
    # channels:history / groups:history: a post whose answer was lost reads the channel back.
    assert set(m["oauth_config"]["scopes"]["bot"]) == {"commands", "chat:write", "chat:write.public",
                                                       "incoming-webhook", "usergroups:read",
                                                       "channels:history", "groups:history"}

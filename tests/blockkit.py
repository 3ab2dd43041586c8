"""Block Kit's limits, as Slack enforces them (api.slack.com/reference/block-kit): a message or
view that breaks one is refused with ``invalid_blocks``. Used by the Slack simulator, so a test
fails where Slack would, and by the tests of the message builders."""

from __future__ import annotations

from typing import Any


def problems(blocks: list[dict[str, Any]], *, view: bool = False, text: str | None = None) -> list[str]:
    found: list[str] = []
    limit = 100 if view else 50
    if len(blocks) > limit:
        found.append(f"{len(blocks)} blocks (at most {limit})")
    if text is not None and len(text) > 40_000:
        found.append("text over 40000 characters")
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "section":
            _text(found, f"block {i} section", block.get("text"), 3000)
        elif kind == "header":
            _text(found, f"block {i} header", block.get("text"), 150, plain=True)
        elif kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10:
                found.append(f"block {i} context has {len(elements)} elements")
            for element in elements:
                _text(found, f"block {i} context", element, 3000)
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25:
                found.append(f"block {i} actions has {len(elements)} elements")
            for element in elements:
                _text(found, f"block {i} button", element.get("text"), 75, plain=True)
                if len(element.get("value", "")) > 2000 or len(element.get("action_id", "")) > 255:
                    found.append(f"block {i} button value or action_id too long")
                confirm = element.get("confirm")
                if confirm:
                    _text(found, "confirm title", confirm.get("title"), 100, plain=True)
                    _text(found, "confirm text", confirm.get("text"), 300)
                    _text(found, "confirm button", confirm.get("confirm"), 30, plain=True)
                    _text(found, "deny button", confirm.get("deny"), 30, plain=True)
        elif kind == "input":  # modals only
            _text(found, f"block {i} input label", block.get("label"), 2000, plain=True)
            element = block.get("element") or {}
            if element.get("type") not in ("plain_text_input", "static_select"):
                found.append(f"block {i} input: unexpected element {element.get('type')!r}")
            if element.get("type") == "static_select" and not 1 <= len(element.get("options", [])) <= 100:
                found.append(f"block {i} select has {len(element.get('options', []))} options (1 to 100)")
            for option in element.get("options", []):
                _text(found, f"block {i} option", option.get("text"), 75, plain=True)
            if len(element.get("initial_value", "")) > 3000:
                found.append(f"block {i} input: initial value over 3000 characters")
        elif kind != "divider":
            found.append(f"block {i}: unexpected type {kind!r}")
    return found


def _text(found: list[str], where: str, obj: Any, limit: int, *, plain: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in (("plain_text",) if plain else ("plain_text", "mrkdwn")):
        found.append(f"{where}: not a {'plain_text' if plain else 'text'} object")
        return
    if not 1 <= len(obj.get("text", "")) <= limit:
        found.append(f"{where}: text of {len(obj.get('text', ''))} characters (1 to {limit})")

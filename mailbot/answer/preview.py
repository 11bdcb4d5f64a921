"""`mailbot templates preview NAME`: one reply rendered from the rules' sample data, with the
headers a customer would see, readable in a terminal."""

from __future__ import annotations

from mailbot.answer.message import reply_subject
from mailbot.answer.render import Renderer
from mailbot.answer.samples import sample_contexts
from mailbot.errors import TemplateError
from mailbot.ruleset import Ruleset


def preview(renderer: Renderer, name: str, rules: Ruleset, variant: str | None = None, *,
        from_address: str = "claves@example.com",
        from_name: str = "Claves de actualización") -> str:
    """A rendered mail, readable in a terminal (`mailbot templates preview NAME`).

    Uses the sample context `variant` (default: the first one), built from `rules`, with
    the configured bot name, so admins see what customers would get under those rules.
    """
    variants = sample_contexts(name, rules)
    label = variant if variant is not None else next(iter(variants))
    if label not in variants:
        raise TemplateError(f"{name}: no sample {label!r}; samples: {', '.join(variants)}")
    context = dict(variants[label], bot_name=from_name)
    rendered = renderer.render(name, context)
    if "reference" in context:
        to = context.get("requester", {}).get("email", "")
        subject = reply_subject(str(context.get("original_subject", "")),
                                str(context["reference"]))
    else:
        to, subject = "(operadores)", "Avisos para operadores"
    others = [v for v in variants if v != label]
    lines = [f"From: {from_name} <{from_address}>", f"To: {to}", f"Subject: {subject}",
             f"X-Mailbot-Template: {name}",
             f"X-Mailbot-Sample: {label}"
             + (f" (otros: {'; '.join(others)})" if others else ""),
             "", rendered.text.rstrip("\n")]
    if rendered.html is not None:
        lines += ["", "----- text/html -----", rendered.html.rstrip("\n")]
    return "\n".join(lines) + "\n"

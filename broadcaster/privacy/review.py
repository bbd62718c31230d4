"""Hold back text that shows personal data until the editor masks it or says why it stays.

Registered on ``Publisher.reviews``, ``review_entry`` runs before every append
(and before a draft is held). It finds personal data with
``broadcaster.privacy.detection`` and then, given the request's ``mask`` and
``acknowledge`` answers:

* nothing found: the entry passes unchanged;
* found, no answer: 422 ``disclosure_review`` with each finding's code,
  offsets (Python ``str`` indexes, i.e. code points, into the body as the
  server normalised it: NFC, ``\\n`` line ends) and masked excerpt;
* ``"acknowledge": {"codes": [...], "reason": "..."}`` covering every code
  found: the text is published as written and the acknowledgement (who, which
  codes, which masked excerpts, the reason) goes to the audit log in the same
  transaction as the entry, through the hooks ``review_hooks`` returns;
  acknowledging only some codes answers 422 ``acknowledge_incomplete``;
* ``"mask": true``: every finding not acknowledged is masked by the server
  (``138****5678``); the masking is audited too. Masking and acknowledging
  combine: an office can keep its own published mailbox and mask a resident's
  phone in one update.

The outcome is left in the request's options under ``"review"`` so the drafts
module can keep it with a held draft. ``review_text`` serves other writers of
public text (public questions): it refuses or masks, and has no acknowledge.

Trade-off: the review reads the markdown source, the text as typed. It is a
safety net for mistakes, not a filter against an editor who hides a number
on purpose (``138**1234**5678`` renders as one number): editors are known,
authenticated people and every acknowledgement is on record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from ..appkeys import PUBLISHER
from ..errors import Unprocessable
from ..store.timeline import audit_row
from ..timeline.model import Actor, Entry, NewEntry
from ..timeline.rules import AppendHook
from ..web.fields import Field, check_object
from .detection import CODES, Finding, review

ACKNOWLEDGE_FIELDS = (
    Field("codes", "list", required=True, nullable=False),
    Field("reason", "text", required=True, nullable=False, max_len=1000),
)
OUTCOME_KEY = "review"
#: The text members of a status entry, reviewed like the body.
STATE_TEXT = ("advice", "summary", "area")


@dataclass(frozen=True)
class Acknowledgement:
    """An editor's statement that the listed kinds of personal data are meant to be public."""

    codes: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"codes": list(self.codes), "reason": self.reason}


@dataclass(frozen=True)
class Outcome:
    """What the review found in a text and how each finding was resolved."""

    text: str
    findings: tuple[Finding, ...] = ()
    masked: tuple[Finding, ...] = ()
    acknowledged: tuple[Finding, ...] = ()
    acknowledgement: Acknowledgement | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the findings, each with how it was resolved, and the acknowledgement."""
        masked = set(self.masked)
        return {
            "findings": [
                {**f.to_dict(), "resolution": "masked" if f in masked else "acknowledged"}
                for f in self.findings
            ],
            "acknowledgement": self.acknowledgement.to_dict() if self.acknowledgement else None,
        }

    def audit(self, conn: Any, actor: Actor, target: str, remote: str | None) -> None:
        """Record the acknowledgement and the masking, inside the caller's transaction."""
        if self.acknowledged and self.acknowledgement:
            detail = {
                **self.acknowledgement.to_dict(),
                "findings": [f.to_dict() for f in self.acknowledged],
            }
            audit_row(conn, actor, "disclosure.acknowledge", target, detail, remote)
        if self.masked:
            detail = {"findings": [f.to_dict() for f in self.masked]}
            audit_row(conn, actor, "disclosure.mask", target, detail, remote)


def parse_acknowledge(value: Any) -> Acknowledgement | None:
    """Check the ``acknowledge`` member; a bad one answers 422 naming ``acknowledge.<field>``."""
    if value is None:
        return None
    try:
        fields = check_object(value, ACKNOWLEDGE_FIELDS)
    except Unprocessable as exc:
        exc.extra["field"] = f"acknowledge.{exc.extra.get('field', '')}"
        raise
    codes = fields["codes"]
    if not codes or not all(isinstance(c, str) and c in CODES for c in codes):
        raise Unprocessable(
            f"'acknowledge.codes' must be a non-empty list of: {', '.join(CODES)}",
            code="invalid_value",
            field="acknowledge.codes",
        )
    if not fields["reason"].strip():
        raise Unprocessable(
            "acknowledging personal data needs a reason in 'acknowledge.reason'",
            code="acknowledge_reason_required",
            field="acknowledge.reason",
        )
    return Acknowledgement(tuple(dict.fromkeys(codes)), fields["reason"].strip())


def _masked(text: str, findings: list[Finding]) -> str:
    for f in sorted(findings, key=lambda f: f.start, reverse=True):
        text = text[: f.start] + f.excerpt + text[f.end :]
    return text


def screen(
    text: str,
    *,
    mask: bool = False,
    acknowledgement: Acknowledgement | None = None,
    field: str = "body",
) -> Outcome:
    """Return the text to publish and how each finding was resolved, or raise 422."""
    findings = review(text)
    if not findings:
        return Outcome(text)
    codes = set(acknowledgement.codes) if acknowledgement else set()
    kept = [f for f in findings if f.code in codes]
    rest = [f for f in findings if f.code not in codes]
    if rest and not mask:
        listed = [f.to_dict() for f in rest]
        if acknowledgement is None:
            raise Unprocessable(
                f"'{field}' contains personal information: resubmit with \"mask\": true, or"
                ' with "acknowledge": {"codes": [...], "reason": "..."} to publish it as written',
                code="disclosure_review",
                field=field,
                findings=listed,
            )
        missing = sorted({f.code for f in rest})
        raise Unprocessable(
            f"'acknowledge.codes' does not cover {', '.join(missing)} found in '{field}':"
            " acknowledge every code found, or mask the rest",
            code="acknowledge_incomplete",
            field="acknowledge.codes",
            findings=listed,
            missing_codes=missing,
        )
    return Outcome(
        _masked(text, rest),
        tuple(findings),
        tuple(rest),
        tuple(kept),
        acknowledgement if kept else None,
    )


def review_entry(new: NewEntry, options: dict[str, Any], actor: Actor) -> NewEntry:
    """Review an entry's body (the ``Publisher.reviews`` hook); leave the outcome in options."""
    outcome = screen(
        new.body,
        mask=bool(options.get("mask", False)),
        acknowledgement=parse_acknowledge(options.get("acknowledge")),
    )
    options[OUTCOME_KEY] = outcome
    if outcome.text != new.body:
        new = replace(new, body=outcome.text)
    # The incident text a status entry sets is public at once, like the body: it is
    # refused with findings, or masked on request (there is nothing to acknowledge).
    mask = bool(options.get("mask", False))
    for name in STATE_TEXT:
        value = getattr(new, name)
        if value:
            changed: dict[str, Any] = {name: review_text(value, field=name, mask=mask)}
            new = replace(new, **changed)
    return new


def outcome_of(options: Mapping[str, Any]) -> Outcome | None:
    """Return the review outcome ``review_entry`` left in ``options``, if any."""
    outcome = options.get(OUTCOME_KEY)
    return outcome if isinstance(outcome, Outcome) else None


def review_hooks(
    options: Mapping[str, Any], actor: Actor, remote: str | None
) -> tuple[AppendHook, ...]:
    """Return append hooks that audit the review's acknowledgement or masking with the entry."""
    outcome = outcome_of(options)
    if outcome is None or not (outcome.acknowledged or outcome.masked):
        return ()

    def hook(conn: Any, incident: Mapping[str, Any], entry: Entry) -> None:
        outcome.audit(conn, actor, f"{entry.incident}#{entry.seq}", remote)

    return (hook,)


def review_text(text: str, *, field: str = "text", mask: bool = False) -> str:
    """Return ``text`` (masked when ``mask``) or raise 422 ``disclosure_review`` naming ``field``.

    For public text with no one to acknowledge it (public questions): findings
    are either refused, so the asker can rewrite, or masked by the server.
    """
    return screen(text, mask=mask, field=field).text


def setup(app: web.Application) -> None:
    app[PUBLISHER].reviews.append(review_entry)

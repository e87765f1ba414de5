"""Overrides: a person promotes or aborts the candidate instead of the evaluator.

`force_promote` makes the candidate (canary, or shadow) stable whatever the evidence says;
`abort` sends everyone back to stable. Each needs a reason, runs under the evaluator's lock
(so it never interleaves with a decision), and is recorded with the OS user who ran it and
the reason: in `feedback_events.json` beside the evaluator's decisions (`"override": true`)
and in the provenance register `models/release_overrides.csv`.
"""

from __future__ import annotations

import getpass
import os
import uuid
from datetime import UTC, datetime

from movierec.core.errors import DataValidationError, ModelLoadError
from movierec.core.files import exclusive_lock
from movierec.core.online_metrics import append_feedback_event
from movierec.core.provenance import OverrideRecord, append_override
from movierec.core.settings import Settings
from movierec.registry.routing import Routing, abort_canary, promote_candidate, read_routing


def os_user() -> str:
    """Who runs this process (the login name, else the uid)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def force_promote(settings: Settings, reason: str) -> OverrideRecord:
    """The candidate becomes stable now, on a person's word."""
    return _override(settings, "force-promote", reason)


def abort(settings: Settings, reason: str) -> OverrideRecord:
    """Everyone back on stable now, on a person's word."""
    return _override(settings, "abort", reason)


def _override(settings: Settings, action: str, reason: str) -> OverrideRecord:
    if not reason.strip():
        raise DataValidationError(f"{action} needs a reason (--reason TEXT): none was given")
    with exclusive_lock(settings.data_path / "release.lock", wait=True):
        before = read_routing(settings)
        if before is None or before.candidate is None:
            raise ModelLoadError(f"{action}: no canary or shadow candidate is routed")
        user = os_user()
        note = f"override ({action}) by {user}: {reason}"
        after = (promote_candidate if action == "force-promote" else abort_canary)(settings, note)
        record = OverrideRecord(
            timestamp=after.updated_at,
            action=action,
            candidate=before.candidate,
            stage=before.stage,
            canary_pct=before.canary_pct,
            stable_before=before.stable,
            stable_after=after.stable,
            user=user,
            reason=reason,
        )
        append_override(settings, record)
        _record_feedback(settings, record, before, after)
        return record


def _record_feedback(
    settings: Settings, record: OverrideRecord, before: Routing, after: Routing
) -> None:
    event: dict[str, object] = {
        "decision": "PROMOTE" if record.action == "force-promote" else "ABORT",
        "override": True,
        "user": record.user,
        "reason": record.reason,
        "reasons": [f"override ({record.action}) by {record.user}: {record.reason}"],
        "stage": str(before.stage),
        "stable": before.stable,
        "canary": record.candidate,
        "pct_before": before.canary_pct,
        "pct_after": after.canary_pct,
        "applied": True,
        "key": f"override-{uuid.uuid4().hex[:12]}",
        "evaluated_at": datetime.now(UTC).isoformat(),
    }
    append_feedback_event(settings.feedback_events_file, event)

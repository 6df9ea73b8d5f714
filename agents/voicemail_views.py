"""A business's voicemails: the list with players and transcripts, the recording proxy, and the actions.

Agents and up of the business (agency agents covering it included) may listen and act: handling a
voicemail or calling the caller back is agents' work, so no role reaching these pages is read-only.
Rows are looked up with the tenant id of ``request.tenant_access``: another business's id is 404.
The recording is fetched through the voice client (``fetch_recording``), never by the browser from
Vonage: the browser never sees the recording URL or our credentials.
"""

from __future__ import annotations

import logging
import re
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import Case, When
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from agents.voicemails import (
    VoicemailAlreadyHandled,
    VoicemailError,
    caller_display,
    duration_text,
    voicemail_call_back,
    voicemail_handle,
)
from conversations.models import Voicemail
from telephony.client import TelephonyError, get_voice_client
from tenants.decorators import tenant_view
from tenants.models import Role

logger = logging.getLogger("switchboard.voicemail")

FILTERS = (("new", "New"), ("handled", "Handled"), ("all", "All"))
PER_PAGE = 25
#: Browsers fetch audio in several range requests; keep the bytes briefly instead of asking Vonage each time.
RECORDING_CACHE_SECONDS = 300
RECORDING_CACHE_MAX_BYTES = 10 * 1024 * 1024
EXTENSIONS = {"audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav", "audio/ogg": "ogg"}
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:
        return ZoneInfo("UTC")


def _voicemail(request, pk: int) -> Voicemail:
    return get_object_or_404(
        Voicemail.objects.select_related("tenant"), pk=pk, tenant_id=request.tenant_access.tenant_id
    )


def _status(value: str | None) -> str:
    return value if value in dict(FILTERS) else "new"


@tenant_view(Role.AGENT)
@require_GET
def voicemail_list(request, tenant_slug: str):
    access = request.tenant_access
    status = _status(request.GET.get("status"))
    rows = Voicemail.objects.filter(tenant_id=access.tenant_id).select_related("handled_by")
    counts = {
        "new": rows.filter(handled_at__isnull=True).count(),
        "handled": rows.filter(handled_at__isnull=False).count(),
    }
    counts["all"] = counts["new"] + counts["handled"]
    show = request.GET.get("show", "")
    show = show if show.isdigit() and len(show) <= 12 else ""  # an id, not a number the database cannot hold
    if show:
        # The e-mail's link: that one voicemail, whatever its status (another business's id shows nothing).
        rows, status = rows.filter(pk=int(show)), "all"
    elif status == "new":
        rows = rows.filter(handled_at__isnull=True)
    elif status == "handled":
        rows = rows.filter(handled_at__isnull=False)
    # New (unhandled) first, newest first within each.
    rows = rows.annotate(is_new=Case(When(handled_at__isnull=True, then=1), default=0)).order_by(
        "-is_new", "-created_at", "-id"
    )
    page = Paginator(rows, PER_PAGE).get_page(request.GET.get("page"))
    items = [
        {
            "voicemail": v,
            "caller": caller_display(v.caller_number),
            "duration": duration_text(v.duration_seconds),
        }
        for v in page.object_list
    ]
    return render(
        request,
        "agents/voicemails.html",
        {
            "tenant": request.tenant,
            "page": page,
            "items": items,
            "status": status,
            "filters": [(value, label, counts[value]) for value, label in FILTERS],
            "showing_one": bool(show),
        },
    )


def _back(request, tenant_slug: str):
    response = redirect("tenant-voicemails", tenant_slug=tenant_slug)
    status = _status(request.POST.get("status"))
    if status != "new":
        response["Location"] += f"?status={status}"
    return response


@tenant_view(Role.AGENT)
@require_POST
def voicemail_handle_view(request, tenant_slug: str, pk: int):
    voicemail = _voicemail(request, pk)
    try:
        voicemail_handle(voicemail=voicemail, user=request.user, now=timezone.now())
    except VoicemailAlreadyHandled as exc:
        messages.info(request, str(exc))
    else:
        messages.success(request, f"Voicemail from {caller_display(voicemail.caller_number)} marked handled.")
    return _back(request, tenant_slug)


voicemail_handle_view.isolation_model = Voicemail
voicemail_handle_view.isolation_kwargs = {"pk": "Voicemail.pk"}


@tenant_view(Role.AGENT)
@require_POST
def voicemail_callback_view(request, tenant_slug: str, pk: int):
    voicemail = _voicemail(request, pk)
    try:
        callback = voicemail_call_back(voicemail=voicemail, user=request.user, now=timezone.now())
    except VoicemailAlreadyHandled as exc:
        messages.info(request, str(exc))
    except VoicemailError as exc:
        messages.error(request, str(exc))
    else:
        when = timezone.localtime(callback.due_at, timezone=_zone(request.tenant.timezone))
        messages.success(
            request,
            f"Call back to {callback.phone} scheduled (due {when:%a %d %b, %H:%M}); the voicemail is handled.",
        )
    return _back(request, tenant_slug)


voicemail_callback_view.isolation_model = Voicemail
voicemail_callback_view.isolation_kwargs = {"pk": "Voicemail.pk"}


@tenant_view(Role.AGENT)
@require_GET
def voicemail_recording(request, tenant_slug: str, pk: int):
    """The recording's audio, fetched through the voice client; a clear 502 page when that fails."""
    voicemail = _voicemail(request, pk)
    key = f"voicemail-recording:{voicemail.pk}"
    cached = cache.get(key)
    if cached is not None:
        data, content_type = cached
    else:
        try:
            data, content_type = get_voice_client().fetch_recording(voicemail.recording_url)
        except Exception as exc:
            level = logging.WARNING if isinstance(exc, TelephonyError) else logging.ERROR
            logger.log(
                level,
                "could not fetch a voicemail recording",
                extra={"voicemail_id": voicemail.pk, "error": str(exc)[:300]},
                exc_info=not isinstance(exc, TelephonyError),
            )
            return render(
                request,
                "agents/voicemail_unavailable.html",
                {"tenant": request.tenant, "voicemail": voicemail, "caller": caller_display(voicemail.caller_number)},
                status=502,
            )
        if len(data) <= RECORDING_CACHE_MAX_BYTES:
            cache.set(key, (data, content_type), RECORDING_CACHE_SECONDS)
    return _audio_response(request, data, content_type, f"voicemail-{voicemail.pk}")


voicemail_recording.isolation_model = Voicemail
voicemail_recording.isolation_kwargs = {"pk": "Voicemail.pk"}


def _audio_response(request, data: bytes, content_type: str, name: str) -> HttpResponse:
    """The bytes, honouring one byte range (Safari will not play audio from a server without ranges)."""
    total = len(data)
    status, body, first, last = 200, data, 0, total - 1
    match = RANGE.match(request.headers.get("Range", "").strip())
    if match and total and (match.group(1) or match.group(2)):
        if match.group(1):
            first = int(match.group(1))
            last = min(int(match.group(2)), total - 1) if match.group(2) else total - 1
        else:  # "bytes=-500": the last 500 bytes
            first, last = max(0, total - int(match.group(2))), total - 1
        if first > last or first >= total:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{total}"
            return response
        status, body = 206, data[first : last + 1]
    response = HttpResponse(body, content_type=content_type, status=status)
    if status == 206:
        response["Content-Range"] = f"bytes {first}-{last}/{total}"
    response["Accept-Ranges"] = "bytes"
    response["Content-Length"] = str(len(body))
    response["Cache-Control"] = "private, max-age=300"
    extension = EXTENSIONS.get(content_type, "bin")
    response["Content-Disposition"] = f'inline; filename="{name}.{extension}"'
    return response

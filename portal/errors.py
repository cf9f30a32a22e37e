"""Designed error pages (HTML) for both sites, with the request id for support."""

from __future__ import annotations

import logging

from flask import Flask, g, render_template, request
from flask_wtf.csrf import CSRFError
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, InternalServerError

from portal.passwords import HashingBusy

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Bad request", "The request could not be understood. Reload the page and try again."),
    403: ("Not allowed", "Your account does not have permission for this page or action."),
    404: ("Page not found", "There is nothing at this address. Check the link, or go back."),
    405: ("Not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is larger than the portal accepts."),
    422: ("Check your input", "Some of what you entered needs correcting."),
    429: ("Slow down", "Too many requests. Wait a moment and try again."),
    500: ("Something went wrong", "The portal hit an unexpected error. It has been logged."),
    503: ("Busy for a moment", "The portal cannot answer this right now. Try again shortly."),
}
# Seconds a client is asked to wait when sign-in cannot run (Redis unreachable).
REDIS_DOWN_RETRY_AFTER = 30


def render_error(code: int, title: str | None = None, message: str | None = None, **context):
    default_title, default_message = MESSAGES.get(code, ("Error", ""))
    body = render_template(
        "errors/error.html",
        code=code,
        title=title or default_title,
        message=message or default_message,
        **context,
    )
    return body, code


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_error(
            400,
            "Form expired",
            "The form's security token is missing or expired. Reload the page and submit again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 404 and g.get("unknown_host"):
            return render_error(
                404,
                "Unknown organisation",
                f"No organisation is served at {g.unknown_host}. Check the address you were "
                "given, or ask your administrator for the right link.",
            )
        return render_error(exc.code or 500)

    @app.errorhandler(HashingBusy)
    def hashing_busy(exc: HashingBusy):
        # Every password-hashing slot of this process, or of this machine, is taken (a sign-in
        # flood): refuse this attempt quickly instead of queueing it behind the others, so
        # other pages keep answering (portal/passwords.py).
        body, status = render_error(
            503,
            "Too many sign-ins at once",
            "The portal is checking many passwords right now. Wait a few seconds and try again.",
        )
        return body, status, {"Retry-After": str(exc.retry_after)}

    @app.errorhandler(RedisError)
    def redis_unavailable(exc: RedisError):
        # Sign-in and the other throttled forms fail closed without Redis: no attempt goes
        # through uncounted. Pages that do not need Redis keep working.
        log.error("redis unavailable", extra={"path": request.path, "error": type(exc).__name__})
        body, status = render_error(
            503,
            "Temporarily unavailable",
            "Signing in and some other actions are paused while the portal reconnects to a "
            "service it needs. Your data is safe. Try again in a minute.",
        )
        return body, status, {"Retry-After": str(REDIS_DOWN_RETRY_AFTER)}

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return http_error(exc)
        log.exception("unhandled error", extra={"path": request.path})
        return render_error(InternalServerError.code)

"""The rating page and its JSON API, as a Starlette application (served by uvicorn; see cli/study.py).

Routes (nothing else is answered; no part of a request is ever used as a file path):

    GET  /                          the page (page/index.html, page.css, page.js: plain HTML and JS)
    GET  /api/state?rater=NAME      the study's wording, this rater's example order and their votes so far
    POST /api/vote                  {"rater": NAME, "example": ID, "choice": -10|-5|0|5|10} (JSON only)
    GET  /image/ID/ROLE?rater=NAME  ROLE is original, left or right: the registered image shown there

The page only knows "left" and "right": the server maps them to method A or B per rater and example
(``blinding``), and no response names a method, a file or where A was placed. Bad input is refused with
a 4xx and a JSON ``{"error": ...}`` before anything is stored: a missing or unknown rater (400 / 403), an
unknown example or role (404), a choice off the scale (422), a body that is not JSON (415), too large (413)
or malformed (400). POST accepts only ``application/json``, so a page on another site cannot submit votes
(browsers send cross-origin JSON only after a CORS preflight, which this app never grants).
"""

from __future__ import annotations

import json
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bgm_jax.study import blinding
from bgm_jax.study.scale import CHOICE_LABELS, LEVELS, is_level
from bgm_jax.study.storage import ImageChanged, NotOnRaterList, RaterError, Study

MAX_BODY_BYTES = 4096
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/page.css": ("page.css", "text/css; charset=utf-8"),
              "/page.js": ("page.js", "text/javascript; charset=utf-8")}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "frame-ancestors 'none'",
}


class Refused(Exception):
    """A request refused with ``status`` and a message for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _respond(response: Response, cache: str = "no-store") -> Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = cache
    return response


def _error(status: int, message: str) -> Response:
    return _respond(JSONResponse({"error": message}, status_code=status))


def create_app(study: Study, *, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app for one open study. ``allowed_hosts`` (e.g. ``["127.0.0.1", "localhost"]``) refuses
    requests for other Host names, which stops DNS-rebinding pages from reaching a local server."""
    page = {route: ((resources.files("bgm_jax.study") / "page" / name).read_bytes(), media_type)
            for route, (name, media_type) in PAGE_FILES.items()}
    settings = study.settings

    def rater_of(request: Request) -> str:
        if "rater" not in request.query_params:
            raise Refused(400, "say who is rating: add ?rater=NAME")
        return checked_rater(request.query_params["rater"])

    def checked_rater(name: object) -> str:
        try:
            return study.check_rater(name)
        except NotOnRaterList as e:
            raise Refused(403, str(e)) from None
        except RaterError as e:
            raise Refused(400, str(e)) from None

    def example_of(value: object) -> int:
        if type(value) is not int or value not in study.examples:
            raise Refused(404, f"no example {value!r} in this study")
        return value

    async def page_file(request: Request) -> Response:
        body, media_type = page[request.url.path]
        return _respond(Response(body, media_type=media_type))

    async def state(request: Request) -> Response:
        rater = rater_of(request)
        votes = await run_in_threadpool(study.votes, rater)
        return _respond(JSONResponse({
            "title": settings.title,
            "question": settings.question,
            "rater": rater,
            "scale": [{"choice": level, "label": CHOICE_LABELS[level]} for level in LEVELS],
            "order": study.order(rater),
            "votes": {str(v.example_id): v.choice for v in votes},  # choices as clicked, never scores
            "total": len(study.examples),
        }))

    async def read_json(request: Request) -> dict:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise Refused(415, "send the vote as application/json")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            raise Refused(413, f"a vote is at most {MAX_BODY_BYTES} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise Refused(413, f"a vote is at most {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "the vote is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, 'a vote is a JSON object {"rater", "example", "choice"}')
        return data

    async def vote(request: Request) -> Response:
        data = await read_json(request)
        rater = checked_rater(data.get("rater"))
        example_id = example_of(data.get("example"))
        choice = data.get("choice")
        if not is_level(choice):
            raise Refused(422, f"choice {choice!r} is not on the scale {list(LEVELS)}")
        await run_in_threadpool(study.record_vote, rater, example_id, choice)
        rated = len(await run_in_threadpool(study.votes, rater))
        return _respond(JSONResponse({"example": example_id, "choice": choice, "rated": rated,
                                      "total": len(study.examples)}))

    async def image(request: Request) -> Response:
        example_id = example_of(request.path_params["example_id"])
        shown = request.path_params["role"]
        if shown not in ("original", *blinding.SIDES):
            raise Refused(404, f"no image {shown!r}; images are original, left and right")
        rater = rater_of(request)
        role = "original" if shown == "original" else blinding.method_on(shown, study.a_side(rater, example_id))
        try:
            data, media_type = await run_in_threadpool(study.read_image, example_id, role)
        except ImageChanged:
            # the organiser's problem, not the rater's: say so without naming the file (it could unblind)
            raise Refused(409, "this image changed on the server since the study was created; tell the organiser") from None
        # The URL holds the rater, and placement is fixed per rater and example, so caching is safe.
        return _respond(Response(data, media_type=media_type), cache="private, max-age=3600")

    def refusing(handler):
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as e:
                return _error(e.status, str(e))
        return wrapped

    routes = [Route(path, refusing(page_file), methods=["GET"]) for path in PAGE_FILES]
    routes += [
        Route("/api/state", refusing(state), methods=["GET"]),
        Route("/api/vote", refusing(vote), methods=["POST"]),
        Route("/image/{example_id:int}/{role}", refusing(image), methods=["GET"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)

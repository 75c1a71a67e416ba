"""The review page: Starlette, server-rendered Jinja, a few lines of script for the keyboard.

Every label is a form post saved in the judgment store before the answer goes back, so a
reload or a crash loses nothing. The page is for one machine: it listens on 127.0.0.1 by
default and asks for the token in the URL it printed (as Jupyter does), kept in a cookie
after the first visit; a label's post carries the token too, so another site cannot post one.
A label's form is a few hundred bytes: a body over ``FORM_LIMIT`` is refused before it is
read, whoever sends it, and slow clients are cut off as :mod:`rlaif.ops.serving` says.
"""

from __future__ import annotations

import getpass
import hmac
import secrets
from pathlib import Path
from urllib.parse import parse_qs

import jinja2

from rlaif.judging.store import HUMAN_LABELS, JudgmentStore
from rlaif.ops.serving import AppServer, BodyError, read_body
from rlaif.review.queue import REASONS, ReviewItem, review_items, run_store

COOKIE = "rlaif_review_token"
FORM_LIMIT = 64 << 10
"""The largest label post read (bytes)."""


def make_app(run_dir: Path, store: JudgmentStore, *, token: str, reviewer: str):
    """``GET /`` (the first pair without a label), ``GET /pair/{n}``, ``POST
    /pair/{n}/label`` and ``GET /health``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.routing import Route

    items = review_items(run_dir)
    page = _environment().get_template("review.html.jinja")

    def allowed(request: Request) -> bool:
        given = request.cookies.get(COOKIE) or request.query_params.get("token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    def forbidden() -> HTMLResponse:
        return HTMLResponse(
            "<h1>403</h1><p>Open the address <code>rlaif review</code> printed (it carries "
            "the token).</p>",
            status_code=403,
        )

    def labels() -> dict[str, str]:
        found = store.human_labels(i.key for i in items)
        return {key: row["label"] for key, row in found.items()}

    def next_open(after: int, have: dict[str, str]) -> int:
        order = [*range(after + 1, len(items)), *range(0, after + 1)]
        return next((n for n in order if items[n].key not in have), min(after + 1, len(items) - 1))

    def with_cookie(response: Response, request: Request) -> Response:
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def index(request: Request) -> Response:
        if not allowed(request):
            return forbidden()
        if not items:
            return HTMLResponse("<p>This run has no judged pairs.</p>")
        n = next_open(len(items) - 1, labels())
        return with_cookie(RedirectResponse(f"/pair/{n}", status_code=303), request)

    async def show(request: Request) -> Response:
        if not allowed(request):
            return forbidden()
        n = request.path_params["n"]
        if not 0 <= n < len(items):
            return HTMLResponse(f"<p>No pair {n}: this run has {len(items)}.</p>", 404)
        have = labels()
        html = page.render(
            run=run_dir.name,
            n=n,
            item=items[n],
            items=items,
            labels=have,
            label=have.get(items[n].key),
            reasons=REASONS,
            choices=HUMAN_LABELS,
            reviewer=reviewer,
            token=token,
            verdict_rows=_verdict_rows(items[n]),
        )
        return with_cookie(HTMLResponse(html), request)

    async def label(request: Request) -> Response:
        try:
            raw = await read_body(request, FORM_LIMIT)
            form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8")).items()}
        except BodyError as exc:
            return exc.response()
        except UnicodeDecodeError:
            return JSONResponse({"error": "the form is not UTF-8"}, status_code=400)
        given = form.get("token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"error": "missing or wrong token"}, status_code=403)
        n = request.path_params["n"]
        if not 0 <= n < len(items):
            return JSONResponse({"error": f"no pair {n}"}, status_code=404)
        choice = form.get("label", "")
        if choice not in HUMAN_LABELS:
            return JSONResponse(
                {"error": f"label {choice!r}: one of {', '.join(HUMAN_LABELS)}"}, status_code=400
            )
        item = items[n]
        store.put_label(item.key, choice, reviewer=reviewer, pair_id=item.pair_id, run=str(run_dir))
        return RedirectResponse(f"/pair/{next_open(n, labels())}", status_code=303)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "pairs": len(items), "labelled": len(labels())})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/pair/{n:int}", show),
            Route("/pair/{n:int}/label", label, methods=["POST"]),
            Route("/health", health),
        ]
    )


def _verdict_rows(item: ReviewItem) -> list[dict]:
    """One row per judge: P(A wins) read from each order it was asked in."""
    rows: dict[str, dict] = {}
    for v in item.verdicts:
        row = rows.setdefault(v.judge, {"judge": v.judge, "orders": {}})
        row["orders"][v.order] = v
    return list(rows.values())


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


class ReviewServer(AppServer):
    """``rlaif review``: the page for ``run_dir``, labels saved in the run's judgment store."""

    def __init__(
        self,
        run_dir: Path,
        host: str = "127.0.0.1",
        port: int = 8766,
        *,
        reviewer: str | None = None,
        token: str | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.token = token or secrets.token_urlsafe(18)
        self.store = JudgmentStore(run_store(self.run_dir))
        app = make_app(
            self.run_dir, self.store, token=self.token, reviewer=reviewer or getpass.getuser()
        )
        super().__init__(app, host, port, what="review")

    @property
    def address(self) -> str:
        """The URL to open: it carries the token."""
        return f"{self.url}/?token={self.token}"

    def stop(self) -> None:
        super().stop()
        self.store.close()

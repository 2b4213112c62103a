"""The web console: server-rendered pages whose scripts call the public API
with the user's bearer token (kept in sessionStorage by the page, never in a
cookie or a URL). The pages hold no data, so they need no credentials; what
a page shows comes from the API under the token's rights.

Everything is served from here: our scripts and styles (app/web/static) and
three.js from the npm package the Makefile installs (app/web/package.json,
pinned by its lock file). No CDN; a Content-Security-Policy holds the pages
to this origin and to scripts we wrote."""
import os
import secrets

from flask import Blueprint, abort, g, render_template, send_from_directory

WEB = os.path.join(os.path.dirname(os.path.dirname(__file__)), "web")
THREE = os.path.join(WEB, "node_modules", "three")
THREE_FOLDERS = {"build": "build", "addons": os.path.join("examples", "jsm")}

bp = Blueprint("web", __name__, template_folder=os.path.join(WEB, "templates"),
               static_folder=os.path.join(WEB, "static"), static_url_path="/web/static")


@bp.before_request
def _nonce():
    g.csp_nonce = secrets.token_urlsafe(16)      # for the page's one inline script: its import map


@bp.after_request
def _policy(response):
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self' 'nonce-%s'; img-src 'self' blob: data:; "
            "connect-src 'self' blob:; style-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'none'" % g.csp_nonce)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/")
def index():
    return render_template("index.html", page="sessions")


@bp.route("/sessions/<uuid:session_id>")
def console(session_id):
    return render_template("console.html", page="console", session_id=str(session_id))


@bp.route("/shared/<uuid:session_id>")
def shared(session_id):
    # A share link: the console, read-only, its secret in the URL's fragment
    # (never sent here); the page's script presents it as X-Share-Link.
    return render_template("console.html", page="console", session_id=str(session_id), shared_link=True)


@bp.route("/admin")
def admin():
    return render_template("admin.html", page="admin")


@bp.route("/web/three/<folder>/<path:name>")
def three(folder, name):
    if folder not in THREE_FOLDERS or not name.endswith(".js"):
        abort(404)
    return send_from_directory(os.path.join(THREE, THREE_FOLDERS[folder]), name,
                               mimetype="text/javascript", max_age=86400)

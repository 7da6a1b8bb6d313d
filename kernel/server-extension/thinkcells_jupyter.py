"""Jupyter server extension: serves this checkout's plotly.js at {base_url}thinkcells/plotly.min.js.

thinkcells' chart outputs load plotly.js from there (falling back to plotly's CDN, then to the
chart's static image), so the 4.8 MB library never travels through the kernel's messages and a
reopened notebook's charts are drawn again. scripts/setup.sh puts this directory on the
project .venv's Python path and enables the extension there.
"""

from pathlib import Path

from jupyter_server.utils import url_path_join
from tornado.web import StaticFileHandler

# kernel/server-extension/ → the checkout's root → the npm package the kernel's charts are made for.
PLOTLY_DIR = Path(__file__).resolve().parents[2] / "node_modules" / "plotly.js-dist-min"
URL_PATH = "thinkcells/plotly.min.js"


def _jupyter_server_extension_points():
    return [{"module": "thinkcells_jupyter"}]


def _load_jupyter_server_extension(serverapp):
    if not (PLOTLY_DIR / "plotly.min.js").is_file():
        # npm install has not run: charts fall back to the CDN or their static image.
        serverapp.log.warning("thinkcells: %s/plotly.min.js is missing; run npm run setup", PLOTLY_DIR)
        return
    # The route matches this one file only. tornado's handler, not jupyter_server's
    # FileFindHandler, whose cache of found paths is shared with the server's own /static/.
    # Unauthenticated, like /static/: a public library, and a <script src> may come before login.
    route = url_path_join(serverapp.base_url, "thinkcells", r"(plotly\.min\.js)")
    serverapp.web_app.add_handlers(".*$", [(route, StaticFileHandler, {"path": str(PLOTLY_DIR)})])
    serverapp.log.info("thinkcells: serving plotly.js at %s", url_path_join(serverapp.base_url, URL_PATH))

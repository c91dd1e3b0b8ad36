"""The web UI: static ES modules and one stylesheet, served by the service at `/ui`.

No build step: what the browser loads is in `static/` as written. See `routes.py`.
"""

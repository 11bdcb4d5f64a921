"""The operators' console: `mailbot web` serves it (serve.py), `create_app` builds it (app.py).

Only this package (besides answer/) imports Jinja2: its own pages, never the customers' reply
templates, which answer/ renders in its sandbox.
"""

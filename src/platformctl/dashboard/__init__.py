"""``platform serve``: a read-only web dashboard over the model and the ledger.

FastAPI routes render Jinja2 templates; HTMX (vendored in ``static/``) only enhances pages that
work without JavaScript; Pico.css styles them, dark mode included. Nothing is loaded from
another host. One module per page under ``pages/``, each an ``APIRouter``; ``site.Site`` holds
what the pages read, rebuilt when the branch's head moves.
"""

"""The analysis service: the video client's analysis of faces behind HTTP (``POST /v1/analyze``) and a
browser page for a camera or a photo. ``python -m clients.service`` starts it; ``create_app`` builds
the ASGI application around an :class:`~clients.service.analyst.Analyst`."""

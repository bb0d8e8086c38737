"""Content negotiation between JSON and an HTML page on routes that offer both."""

HTML_RANGES = frozenset({"text/html", "text/*"})
JSON_RANGES = frozenset({"application/json", "application/*", "*/*"})


def prefers_html(accept: str | None) -> bool:
    """Whether the Accept header ranks text/html above JSON; no header, ``*/*`` or a tie answers JSON."""
    html = json = 0.0
    for media_range in (accept or "").split(","):
        kind, *params = (part.strip() for part in media_range.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        kind = kind.lower()
        if kind in HTML_RANGES:
            html = max(html, quality)
        elif kind in JSON_RANGES:
            json = max(json, quality)
    return html > json

"""List the built-in channels; the app factory loads them by module name.

The core never imports a channel: it only knows these names, the way
datasette registers its own features through the same hooks as extensions.
Each module exposes ``setup(app: web.Application) -> None``.
"""

BUILTIN_CHANNELS: tuple[str, ...] = (
    "channels.feeds",
    "channels.pages",
    "channels.hub",
    "channels.catchup",
    "channels.websocket",
    "channels.sse",
    "channels.webhook_api",
    "channels.sms.service",
    "channels.worker",
    "channels.cap",
    "channels.search_page",
    "channels.area_pages",
)

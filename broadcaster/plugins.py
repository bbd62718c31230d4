"""List the built-in channels; the app factory loads them by module name.

The core never imports a channel: it only knows these names, the way
datasette registers its own features through the same hooks as extensions.
Each module exposes ``setup(app: web.Application) -> None``.
"""

BUILTIN_CHANNELS: tuple[str, ...] = (
    "channels.feeds.serve",
    "channels.pages.serve",
    "channels.live.hub",
    "channels.live.catchup",
    "channels.live.websocket",
    "channels.live.sse",
    "channels.webhooks.api",
    "channels.sms.service",
    "channels.delivery.worker",
    "channels.cap.serve",
    "channels.pages.search",
    "channels.pages.areas",
)

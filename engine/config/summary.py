"""A short human summary of a valid config, printed by `switchboard check`."""

from __future__ import annotations

from .errors import display_path
from .model import Config
from .store_spec import mask_password


def _listener_line(listener, width: int) -> str:
    name = listener.name.ljust(width)
    if listener.mllp:
        source = f"mllp {listener.mllp}"
        tls = listener.tls
        if tls:
            source += f" tls>={tls.min_version}"
            if tls.require_client_cert != "none":
                source += f" client-cert={tls.require_client_cert}"
    else:
        source = f"directory {display_path(listener.directory)} ({listener.pattern})"
    return f"  {name}  {source}  ack={listener.ack}"


def summary(config: Config) -> str:
    """Listeners with their endpoints or directories and ACK mode, routes, channels, store
    (password masked) and admin endpoint."""
    lines = [f"{display_path(config.path)}: OK", f"store: {mask_password(config.store)}"]
    width = max((len(listener.name) for listener in config.listeners), default=0)
    lines.append(f"listeners ({len(config.listeners)}):")
    lines.extend(_listener_line(listener, width) for listener in config.listeners)
    lines.append(f"routes: {len(config.routes)}")
    names = ", ".join(sorted(config.channels)) or "none"
    lines.append(f"channels ({len(config.channels)}): {names}")
    admin = config.admin
    if admin is None:
        lines.append("admin: off")
    else:
        token = "token required" if admin.token else "no token"
        lines.append(f"admin: {admin.listen} ({token})")
    return "\n".join(lines)

"""TCP ports for agent channels on this machine (used when unsandboxed)."""
import socket


def parse_port_range(text: str | int) -> range | None:
    """"6100-6199" -> range; "0" -> None (the agent picks and announces its port)."""
    text = str(text).strip()
    if text in ("", "0"):
        return None
    first, _, last = text.partition("-")
    low, high = int(first), int(last or first)
    if not (1024 <= low <= high <= 65535):
        raise ValueError("CHIMERAX_PORT_RANGE must be 0 or LOW-HIGH within 1024-65535")
    return range(low, high + 1)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True

"""Plain records the store hands out; no behaviour beyond derived values."""
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeAlias

    from sqlalchemy import RowMapping

    # A row as the store reads it: a query's mapping, or a dict (database.Prepared).
    Row: TypeAlias = RowMapping | Mapping[str, Any]

STARTING, ACTIVE, TERMINATING, TERMINATED, FAILED, SUSPENDED = (
    "starting", "active", "terminating", "terminated", "failed", "suspended")
STATUSES = (STARTING, ACTIVE, TERMINATING, TERMINATED, FAILED, SUSPENDED)
LIVE_STATUSES = (STARTING, ACTIVE, TERMINATING)

END_REASONS = ("deleted", "idle_timeout", "max_lifetime", "crashed", "unhealthy",
               "startup_failed", "server_restart", "server_shutdown", "memory_limit", "command_timeout",
               "suspended_expired", "suspend_failed", "unresponsive")

# What the owner of a session in transition is doing: a cold start (which the
# sweeper may adopt once ready), a start that has more to do once the process
# is ready (a claimed pool process, an initial file to open: never adopted
# half done), a resume, an end, a suspend.
CREATE, CREATE_MORE, RESUME, END, SUSPEND = "create", "create_more", "resume", "end", "suspend"
OPERATIONS = (CREATE, CREATE_MORE, RESUME, END, SUSPEND)

ROLES = ("user", "admin")


@dataclass(frozen=True)
class Principal:
    """Who a request is: its user and role, what its credentials may do
    (`scopes`: None, all its role's), and the token user acting for it (`via`)."""
    user: str
    role: str
    scopes: frozenset | None = None
    via: str | None = None
    token_id: int | None = None
    link_session: str | None = None     # a share link's bearer: that session only, to view

    @property
    def is_admin(self) -> bool:
        """An admin whose credentials may read what is not theirs (admin:read)."""
        return self.role == "admin" and (self.scopes is None or "admin:read" in self.scopes)

    def may(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    @property
    def who(self) -> str:
        """For logs and audit: `alice` or `alice via=portal-backend`."""
        return self.user if self.via is None else "%s via=%s" % (self.user, self.via)


@dataclass(frozen=True)
class ProcessHandle:
    """One ChimeraX process as its launcher recorded it. `details` is the
    launcher's own (JSON; only the launcher that made it reads it); what
    others may know is typed here."""
    details: dict

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "ProcessHandle | None":
        return cls(dict(data)) if data else None

    def to_json(self) -> dict[str, Any]:
        return dict(self.details)

    @property
    def port(self) -> int | None:
        """The TCP port its channel reserved (None: a socket, or chosen by the process)."""
        return self.details.get("port")

    @property
    def pending_reason(self) -> str | None:
        """Why a scheduler keeps it waiting, while it does."""
        return self.details.get("pending_reason")

    @property
    def started_at(self) -> float | None:
        return self.details.get("create_time") or self.details.get("submitted")

    @property
    def chimerax_version(self) -> str | None:
        """The ChimeraX release it runs, as its agent reported once ready."""
        return self.details.get("chimerax_version")

    @property
    def started_by(self) -> str | None:
        """The worker that started it (services/upkeep/owners.py), where the launcher can tell."""
        return self.details.get("owner")


class PoolStatus(str, Enum):
    STARTING = "starting"
    READY = "ready"


@dataclass(frozen=True)
class PoolEntry:
    id: str
    status: PoolStatus
    created_at: float
    directory: str
    host_id: str
    domain: str
    port: int | None = None
    process: ProcessHandle | None = None
    owner: str | None = None

    @classmethod
    def from_row(cls, row: "Row") -> "PoolEntry":
        row = dict(row)
        return cls(**dict(row, status=PoolStatus(row["status"])))


@dataclass
class SessionRecord:
    id: str
    user: str
    label: str | None
    status: str
    created_at: float
    last_activity: float
    idle_timeout: int
    max_lifetime: int
    workspace: str
    ended_at: float | None = None
    end_reason: str | None = None
    port: int | None = None
    process: ProcessHandle | None = None
    health_failures: int = 0
    workspace_removed: int = 0
    host_id: str | None = None    # the service instance that started it
    domain: str | None = None     # where its process runs, as its launcher names it
    suspended_at: float | None = None
    suspend_digest: str | None = None
    deleted_at: float | None = None
    owner: str | None = None
    operation: str | None = None
    # Usage as last sampled (store/accounting.py says how samples add up).
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    usage_process: str | None = None
    usage_process_cpu: float | None = None

    @classmethod
    def from_row(cls, row: "Row") -> "SessionRecord":
        return cls(**dict(row))

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def chimerax_version(self) -> str | None:
        """The ChimeraX release its process runs, while it has one."""
        return self.process.chimerax_version if self.process else None

    @property
    def pending_reason(self) -> str | None:
        """Why a starting session's process waits (a scheduler's reason), else None."""
        return self.process.pending_reason if self.status == STARTING and self.process else None

    @property
    def expires_at(self) -> float | None:
        if not self.is_live:
            return None
        return min(self.last_activity + self.idle_timeout, self.created_at + self.max_lifetime)


@dataclass
class TokenRecord:
    id: int
    user: str
    role: str
    created_at: float
    revoked_at: float | None
    token_hash: str = ""
    scopes: str | None = None           # space-separated; None: its role's
    expires_at: float | None = None
    act_as: str | None = None
    note: str | None = None
    created_by: str | None = None
    last_used: float | None = None

    @classmethod
    def from_row(cls, row: "Row") -> "TokenRecord":
        return cls(**dict(row))

"""Knobs of the simulated fleet: injected faults per BMC and phase durations per fleet.

Durations are LAB seconds (scaled by the fleet's ``speed``), except
``Faults.latency_s``, which is real seconds (it models a slow network that
clients measure with real timeouts).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Component kinds a fault list may name (``all`` matches every component).
FAULT_COMPONENTS = frozenset(
    {"all", "idrac", "bios", "cpld", "raid", "nic", "backplane", "disk", "psu", "other"}
)


class Faults(BaseModel):
    """Misbehaviour injected into one BMC.

    Connection faults (``hang``, ``not_listening``, ``latency_s``, ``error_rate``,
    ``auth_failure``) act on every request. Firmware faults act on update jobs
    and reboots; ``job_fails`` / ``job_hangs`` list component kinds (``bios``,
    ``idrac``, ... or ``all``; ``true`` in YAML means ``[all]``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_failure: bool = Field(default=False, description="Every login and Basic auth answers 401")
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Fraction answered 500/503")
    latency_s: float = Field(
        default=0.0, ge=0.0, description="Delay before every answer (real seconds)"
    )
    hang: bool = Field(default=False, description="Accept TCP, never send a byte (not even TLS)")
    not_listening: bool = Field(default=False, description="No socket bound: connection refused")
    job_fails: list[str] = Field(
        default_factory=list, description="Components whose update job ends Failed"
    )
    job_hangs: list[str] = Field(
        default_factory=list,
        description="Components whose update job stays Running, then fails JCP052",
    )
    hang_s: float = Field(
        default=120.0, gt=0, description="Lab seconds a hung job runs before JCP052"
    )
    host_never_returns: bool = Field(
        default=False, description="After a power-off the host stays Off (BMC says host down)"
    )
    busy_503_s: float = Field(
        default=0.0, ge=0.0, description="Lab seconds of 503 answers after each job starts"
    )
    version_unchanged: bool = Field(
        default=False, description="Jobs complete but the installed version stays the same"
    )
    ignores_graceful: bool = Field(
        default=False, description="GracefulRestart/GracefulShutdown are accepted and ignored"
    )

    @field_validator("job_fails", "job_hangs", mode="before")
    @classmethod
    def _components(cls, value: Any) -> Any:
        if value is True:
            return ["all"]
        if value is False or value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            unknown = [v for v in value if str(v).lower() not in FAULT_COMPONENTS]
            if unknown:
                known = ", ".join(sorted(FAULT_COMPONENTS))
                raise ValueError(f"unknown component(s) {unknown} (known: {known})")
            return [str(v).lower() for v in value]
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> Faults:
        if self.hang and self.not_listening:
            raise ValueError("hang and not_listening exclude each other")
        return self

    def fails(self, kind: str) -> bool:
        """Whether an update job of this component kind is made to fail."""
        return "all" in self.job_fails or kind in self.job_fails

    def hangs(self, kind: str) -> bool:
        """Whether an update job of this component kind is made to hang (JCP052)."""
        return "all" in self.job_hangs or kind in self.job_hangs


class Durations(BaseModel):
    """How long firmware work takes on a simulated iDRAC, in lab seconds.

    Defaults are realistic in shape but short; a benchmark's "10 s per
    server" is download 3 + apply 4 + ... scaled by ``FleetSpec.speed``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    download_s: float = Field(default=3.0, ge=0, description="Image download")
    apply_s: float = Field(default=4.0, ge=0, description="Flashing one component")
    reboot_s: float = Field(default=8.0, ge=0, description="Host power-off + POST + boot")
    idrac_reset_s: float = Field(default=10.0, ge=0, description="iDRAC restart after its update")
    task_retention_s: float = Field(
        default=5.0, ge=0, description="TaskService keeps a finished task this long (iDRAC 7.00)"
    )
    step_s: float = Field(
        default=0.5, ge=0, description="Small transitions (New -> Downloading, RebootPending)"
    )

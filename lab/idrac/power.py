"""Host power of a simulated server: ComputerSystem.Reset over lab time.

A reboot takes ``Durations.reboot_s`` lab seconds: a quarter powered off,
then POST (``InPOST``, when staged firmware is applied through the
``during_post`` hook), then the rest booting, ending ``OutOfPOST``.
``PowerState`` reflects each phase. Faults: ``ignores_graceful`` (ACPI
requests accepted and ignored), ``host_never_returns`` (power stays Off).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from clients.errors import RemoteError
from lab.idrac.state import BmcState

PostHook = Callable[[], Awaitable[None]]
RESET_TYPES = (
    "On",
    "ForceOff",
    "ForceRestart",
    "GracefulRestart",
    "GracefulShutdown",
    "PushPowerButton",
    "Nmi",
    "PowerCycle",
)
_OFF_SHARE = 0.25


def _conflict(message: str, code: str = "Base.1.12.OperationNotAllowed") -> RemoteError:
    return RemoteError(status=409, code=code, message=message)


def reset(bmc: BmcState, reset_type: str, *, during_post: PostHook) -> None:
    """Start a ComputerSystem.Reset; the transition runs in the background.

    Args:
        bmc: The server.
        reset_type: Redfish ResetType.
        during_post: Work done while the host is in POST (staged updates).

    Raises:
        RemoteError: 400 for an unknown type, 409 when the host is in transition
            or already in the requested power state.
    """
    if reset_type not in RESET_TYPES:
        raise RemoteError(
            status=400,
            code="Base.1.12.PropertyValueNotInList",
            message=f"The value {reset_type} for the property ResetType is not in the list "
            "of acceptable values.",
        )
    if reset_type == "Nmi":
        return
    if bmc.transitioning:
        raise _conflict(
            "The server is transitioning between power states. Retry the operation later.",
            code="Base.1.12.ResourceInUse",
        )
    on = bmc.power_state == "On"
    if reset_type == "PushPowerButton":
        reset_type = "GracefulShutdown" if on else "On"
        if on:  # the button is not an ACPI request a host may ignore
            bmc.power_task = bmc.spawn(shutdown(bmc, graceful=True))
            return
    if (reset_type == "On") == on:
        raise _conflict(
            "Unable to perform the operation because the server is already "
            f"{'on' if on else 'off'}."
        )
    if reset_type.startswith("Graceful") and bmc.faults.ignores_graceful:
        return  # the OS never acts on the ACPI request
    if reset_type == "On":
        bmc.power_task = bmc.spawn(boot(bmc, during_post=during_post))
    elif reset_type in ("ForceOff", "GracefulShutdown"):
        bmc.power_task = bmc.spawn(shutdown(bmc, graceful=reset_type == "GracefulShutdown"))
    else:
        graceful = reset_type == "GracefulRestart"
        bmc.power_task = bmc.spawn(reboot(bmc, graceful=graceful, during_post=during_post))


async def shutdown(bmc: BmcState, *, graceful: bool) -> None:
    """Power the host off (after the OS shut down, when graceful)."""
    if graceful:
        await bmc.clock.sleep(bmc.durations.step_s)
    bmc.power_state = "Off"
    bmc.server_status = "PoweredOff"


async def reboot(bmc: BmcState, *, graceful: bool, during_post: PostHook) -> None:
    """Power off, stay off a while, then boot (unless the host never returns).

    Args:
        bmc: The server.
        graceful: Let the OS shut down first.
        during_post: Work done in POST.
    """
    await shutdown(bmc, graceful=graceful)
    await bmc.clock.sleep(bmc.durations.reboot_s * _OFF_SHARE)
    await boot(bmc, during_post=during_post, delay=False)


async def boot(bmc: BmcState, *, during_post: PostHook, delay: bool = True) -> None:
    """Power on and boot: POST (applying staged updates), then the OS.

    Args:
        bmc: The server.
        during_post: Work done in POST.
        delay: Wait for the power-on itself first (a plain ``On``).
    """
    if bmc.faults.host_never_returns:
        bmc.power_state = "Off"  # the host is dead: the BMC reports it down
        bmc.server_status = "PoweredOff"
        return
    if delay:
        await bmc.clock.sleep(bmc.durations.step_s)
    bmc.power_state = "On"
    bmc.server_status = "InPOST"
    await during_post()
    await bmc.clock.sleep(bmc.durations.reboot_s * (1 - _OFF_SHARE))
    bmc.server_status = "OutOfPOST"


def lc_status(bmc: BmcState) -> dict[str, object]:
    """Body of DellLCService.GetRemoteServicesAPIStatus.

    ``LCStatus`` is ``NotReady`` while a job runs or the host is in POST;
    ``Status`` is ``Ready`` only when LC is; ``ServerStatus`` is
    ``OutOfPOST``, ``InPOST`` or ``PoweredOff``.

    Args:
        bmc: The iDRAC.

    Returns:
        The response body.
    """
    running = any(j.state == "Running" for j in bmc.jobs.all())
    lc_ready = not running and bmc.server_status != "InPOST" and not bmc.transitioning
    message, code = (
        ("Lifecycle Controller Remote Services is ready.", "LC061")
        if lc_ready
        else ("Lifecycle Controller Remote Services is not ready.", "LC060")
    )
    return {
        "@Message.ExtendedInfo": [
            {"Message": message, "MessageArgs": [], "MessageId": f"IDRAC.2.8.{code}"}
        ],
        "LCStatus": "Ready" if lc_ready else "NotReady",
        "RTStatus": "Ready",
        "ServerStatus": bmc.server_status,
        "Status": "Ready" if lc_ready else "NotReady",
        "TelemetryStatus": "Ready",
    }

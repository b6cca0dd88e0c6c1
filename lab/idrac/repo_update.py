"""DellSoftwareInstallationService on a simulated iDRAC: updates from a catalog.

``InstallFromRepository`` queues a RepositoryUpdate job: the iDRAC fetches
``<ShareType>://<IPAddress>/<ShareName>/<CatalogFile>``, compares the
catalog with its inventory for its model (newer versions only) and either
records the list (``ApplyUpdate`` False, read back with
``GetRepoBasedUpdateList``) or spawns one firmware job per component, host
components staged for one reboot (``RebootNeeded``) and the iDRAC last.

Packages are fetched from the catalog's ``baseLocation`` when it has one
(Dell's behaviour): a mirrored catalog that still says
``downloads.dell.com`` makes every package job fail (RED132) in the lab.
"""

from __future__ import annotations

from typing import Any

from clients.errors import RemoteError
from lab.catalog import CatalogEntry, package_list_xml, parse_catalog
from lab.dup import SYSTEM_IDS, UPDATE_ORDER, component_kind, short_model, version_key
from lab.idrac import messages as msg
from lab.idrac.firmware import (
    JobFailure,
    fetch_file,
    reboot_for_updates,
    run_update,
    set_state,
    trigger_busy,
)
from lab.idrac.jobs import Job
from lab.idrac.state import BmcState

SHARE_TYPES = ("HTTP", "HTTPS", "NFS", "CIFS")


def _bad_request(message: str, code: str = "Base.1.12.PropertyValueNotInList") -> RemoteError:
    return RemoteError(status=400, code=code, message=message)


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "yes", "1", "on")


def start_install_from_repository(bmc: BmcState, body: dict[str, Any]) -> Job:
    """Validate an InstallFromRepository request and queue its RepositoryUpdate job.

    Args:
        bmc: The iDRAC.
        body: The action's JSON body.

    Returns:
        The RepositoryUpdate job.

    Raises:
        RemoteError: 400 for a missing IPAddress or an unsupported ShareType.
    """
    share_type = str(body.get("ShareType", "NFS")).upper()
    if share_type not in SHARE_TYPES:
        raise _bad_request(f"The value {share_type} for ShareType is not supported.")
    address = str(body.get("IPAddress") or "").strip()
    if not address:
        raise _bad_request("The property IPAddress is required.", "Base.1.12.PropertyMissing")
    share = str(body.get("ShareName") or "").strip("/")
    catalog_file = str(body.get("CatalogFile") or "Catalog.xml")
    scheme = share_type.lower()
    port = body.get("PortNumber")
    host = f"{address}:{port}" if port and ":" not in address else address
    share_base = f"{scheme}://{host}" + (f"/{share}" if share else "")
    job = bmc.jobs.create(
        name="Repository Update", job_type="RepositoryUpdate", now=bmc.clock.now()
    )
    job.task = bmc.spawn(
        _run(
            bmc,
            job,
            share_base=share_base,
            catalog_url=f"{share_base}/{catalog_file}",
            apply=_flag(body.get("ApplyUpdate"), True),
            reboot=_flag(body.get("RebootNeeded"), False),
        )
    )
    return job


async def _run(
    bmc: BmcState, job: Job, *, share_base: str, catalog_url: str, apply: bool, reboot: bool
) -> None:
    trigger_busy(bmc)
    await bmc.clock.sleep(bmc.durations.step_s)
    set_state(bmc, job, "Running", msg.RUNNING, None)  # no PercentComplete, as on real iDRACs
    try:
        try:
            content = await fetch_file(bmc, catalog_url, True)
        except JobFailure as exc:
            raise JobFailure(msg.CATALOG_FAILED) from exc
        try:
            catalog = parse_catalog(content)
        except ValueError as exc:
            raise JobFailure(msg.CATALOG_INVALID) from exc
    except JobFailure as failure:
        set_state(bmc, job, "Failed", failure.msg, 100)
        return
    await bmc.clock.sleep(bmc.durations.step_s * 2)  # comparing with the inventory
    base = _package_base(catalog.base_location, catalog.protocols, share_base)
    updates = compare(bmc, catalog.entries, base=base, job_id=job.id)
    bmc.repo_updates = updates
    if not updates:
        set_state(bmc, job, "Completed", msg.UP_TO_DATE, 100)
        return
    if not apply:
        set_state(bmc, job, "Completed", msg.COMPLETED, 100)
        return
    children = _spawn_children(bmc, updates)
    set_state(bmc, job, "Completed", msg.COMPLETED, 100)
    if reboot:
        await _reboot_when_staged(bmc, [c for c in children if c.kind != "idrac"])


def _package_base(base_location: str, protocols: str, share_base: str) -> str:
    if not base_location.strip():
        return share_base
    if "://" in base_location:
        return base_location.rstrip("/")
    scheme = (protocols.split(",")[0].strip() or "HTTP").lower()
    return f"{scheme}://{base_location.strip('/')}"


def compare(
    bmc: BmcState, entries: list[CatalogEntry], *, base: str, job_id: str
) -> list[dict[str, Any]]:
    """The catalog's updates for this server: newer versions of installed components.

    Args:
        bmc: The server (model and inventory).
        entries: Catalog SoftwareComponents.
        base: Where packages are fetched from.
        job_id: The RepositoryUpdate job.

    Returns:
        One dict per update (the DCIM_RepoUpdateSWID properties, plus ``_url``,
        ``_kind``), in the project's update order.
    """
    model = short_model(bmc.spec.model)
    system_id = SYSTEM_IDS.get(model)
    updates: list[dict[str, Any]] = []
    for comp in bmc.components:
        kind = component_kind(comp.fqdd)
        if not comp.updateable or kind not in UPDATE_ORDER:
            continue
        fits = [
            e
            for e in entries
            if comp.component_id in e.component_ids
            and (model in e.models or (system_id is not None and system_id in e.system_ids))
        ]
        if not fits:
            continue
        best = max(fits, key=lambda e: version_key(e.version))
        if version_key(best.version) <= version_key(comp.version):
            continue
        updates.append(
            {
                "DisplayName": comp.name,
                "PackageName": best.path.rsplit("/", 1)[-1],
                "PackagePath": best.path,
                "PackageVersion": best.version,
                "ComponentID": comp.component_id,
                "ComponentType": best.component_type,
                "Criticality": best.criticality,
                "RebootType": "IDRAC" if kind == "idrac" else "HOST",
                "Target": comp.fqdd,
                "ComponentInstalledVersion": comp.version,
                "JobID": job_id,
                "_url": f"{base}/{best.path.lstrip('/')}",
                "_kind": kind,
            }
        )
    return sorted(updates, key=lambda u: UPDATE_ORDER.index(u["_kind"]))


def _spawn_children(bmc: BmcState, updates: list[dict[str, Any]]) -> list[Job]:
    host: list[Job] = []
    children: list[Job] = []
    # Dell's repository update applies the iDRAC last.
    for update in sorted(updates, key=lambda u: u["_kind"] == "idrac"):
        child = bmc.jobs.create(
            name="Firmware Update", job_type="FirmwareUpdate", now=bmc.clock.now()
        )
        child.target, child.kind = update["Target"], update["_kind"]
        child.task = bmc.spawn(
            run_update(
                bmc,
                child,
                image_uri=update["_url"],
                apply_time="OnReset",
                from_repository=True,
                after=list(host) if child.kind == "idrac" else None,
            )
        )
        children.append(child)
        if child.kind != "idrac":
            host.append(child)
    return children


async def _reboot_when_staged(bmc: BmcState, host_jobs: list[Job]) -> None:
    staged = ("Scheduled", "Failed", "Completed")
    while any(j.state not in staged and bmc.jobs.get(j.id) is j for j in host_jobs):
        await bmc.clock.sleep(bmc.durations.step_s)
    if any(j.state == "Scheduled" for j in host_jobs):
        await reboot_for_updates(bmc)


def update_list(bmc: BmcState) -> dict[str, Any]:
    """Body of GetRepoBasedUpdateList.

    Args:
        bmc: The iDRAC.

    Returns:
        ``{"PackageList": "<CIM XML>"}``.

    Raises:
        RemoteError: 400 SUP029 when up to date; 400 when no repository job ran yet.
    """
    if bmc.repo_updates is None:
        raise _bad_request(
            "Unable to get the list of updates because no repository update job has run.",
            "IDRAC.2.8.SUP030",
        )
    if not bmc.repo_updates:
        raise _bad_request(msg.UP_TO_DATE[0], f"IDRAC.2.8.{msg.UP_TO_DATE[1]}")
    public = [{k: v for k, v in u.items() if not k.startswith("_")} for u in bmc.repo_updates]
    return {"PackageList": package_list_xml(public)}

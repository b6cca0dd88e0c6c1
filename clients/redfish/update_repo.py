"""Repository (catalog) updates and their dry run.

Part of :class:`~clients.redfish.update.DellUpdates`.
"""

from __future__ import annotations

from typing import Any

from clients.errors import PreconditionError, ProtocolError, RemoteError
from clients.redfish.jobs import RepoUpdate, parse_package_list
from clients.redfish.update_base import (
    INSTALL_FROM_REPOSITORY,
    REPO_UPDATE_LIST,
    DellBase,
    json_body,
)

__all__ = ["RepositoryOps", "UP_TO_DATE_CODE"]

# "Firmware versions on server match catalog, applicable updates are not present."
UP_TO_DATE_CODE = "SUP029"
_SHARE_TYPES = ("HTTP", "HTTPS", "NFS", "CIFS")


class RepositoryOps(DellBase):
    """InstallFromRepository and GetRepoBasedUpdateList."""

    # -- repository (catalog) updates -------------------------------------------------

    async def install_from_repository(
        self,
        *,
        host: str,
        share_type: str = "HTTP",
        share_name: str,
        catalog_file: str = "Catalog.xml",
        apply_update: bool,
        reboot_needed: bool = False,
        ignore_cert_warning: bool = False,
    ) -> str:
        """``DellSoftwareInstallationService.InstallFromRepository``.

        With ``apply_update`` False this is a dry run: wait for the job, then
        read :meth:`repo_update_list`. With True the iDRAC spawns one job per
        component: diff :meth:`jobs` before and after to follow them.

        Args:
            host: Share host (``IPAddress``), with ``:port`` when not the default.
            share_type: HTTP, HTTPS, NFS or CIFS.
            share_name: Directory of the catalog on the share.
            catalog_file: Catalog file name (``Catalog.xml`` or ``Catalog.xml.gz``).
            apply_update: Install (True) or only compare (False).
            reboot_needed: Let the iDRAC reboot the host for updates that need it.
            ignore_cert_warning: Accept an untrusted HTTPS share certificate.

        Returns:
            The RepositoryUpdate job id.

        Raises:
            PreconditionError: Bad share arguments.
            RackflowError: The iDRAC refused.
        """
        kind = share_type.strip().upper()
        if kind not in _SHARE_TYPES:
            raise PreconditionError(
                subject="share_type",
                reason=f"{share_type!r} is not one of {', '.join(_SHARE_TYPES)}",
            )
        if not host.strip() or "://" in host or "/" in host:
            raise PreconditionError(subject="host", reason=f"expected host[:port], got {host!r}")
        body: dict[str, Any] = {
            "IPAddress": host.strip(),
            "ShareType": kind,
            "ShareName": share_name,
            "CatalogFile": catalog_file,
            "ApplyUpdate": "True" if apply_update else "False",
            "RebootNeeded": reboot_needed,
            "IgnoreCertWarning": "On" if ignore_cert_warning else "Off",
        }
        response = await self._bmc.post(INSTALL_FROM_REPOSITORY, body)
        return self._job_id_from(response, INSTALL_FROM_REPOSITORY)

    async def repo_update_list(self) -> list[RepoUpdate]:
        """``GetRepoBasedUpdateList`` after a repository job: what would be updated.

        Returns:
            One entry per applicable update; [] when the server is up to date
            (the iDRAC answers 400 SUP029, which is not an error).

        Raises:
            ProtocolError: No PackageList, or malformed XML.
            RackflowError: Other errors of the POST.
        """
        try:
            response = await self._bmc.post(REPO_UPDATE_LIST, {}, idempotent=True)
        except RemoteError as err:
            if _is_up_to_date(err):
                return []
            raise
        target = self._target(REPO_UPDATE_LIST)
        package_list = json_body(response, target).get("PackageList")
        if not isinstance(package_list, str):
            raise ProtocolError(target=target, detail="no PackageList string")
        return parse_package_list(package_list, target=target) if package_list.strip() else []


def _is_up_to_date(err: RemoteError) -> bool:
    codes = [err.code or ""] + [str(i.get("MessageId", "")) for i in err.extended_info]
    return 400 <= err.status < 500 and any(c.endswith(UP_TO_DATE_CODE) for c in codes)

"""The vCenter session: read hosts, maintenance mode, wait for connection."""

from __future__ import annotations

import logging
import math
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from clients.errors import (
    DeadlineExceeded,
    NotFoundError,
    PreconditionError,
    ProtocolError,
    RackflowError,
    ServerError,
    TransportError,
)
from clients.vsphere.faults import task_failure, translate_error
from clients.vsphere.models import EsxiHost, MaintenanceOptions, clean, service_tag_of

__all__ = ["VSphereClient"]

logger = logging.getLogger("rackflow.clients.vsphere")

# pyVmomi's stubs leave its constructors and connect helpers untyped: use them
# through Any so mypy --strict checks the rest of this module.
_connect: Any = SmartConnect
_disconnect: Any = Disconnect
_query: Any = vmodl.query.PropertyCollector
_HostSystem: Any = vim.HostSystem
_MaintenanceSpec: Any = vim.host.MaintenanceSpec
_DecommissionMode: Any = vim.vsan.host.DecommissionMode

_HOST_PROPERTIES = [
    "name",
    "parent",
    "runtime.connectionState",
    "runtime.inMaintenanceMode",
    "summary.config.product",
    "hardware.systemInfo",
]


class VSphereClient:
    """A session with one vCenter (synchronous, pyVmomi).

    Args:
        host: vCenter address or name.
        port: HTTPS port.
        user: User name, e.g. ``administrator@vsphere.local``.
        password: Password (never logged, never in errors).
        verify: True (system CAs), an ``ssl.SSLContext``, or False (no checks).
        timeout: Seconds a single SOAP call may take.
        connect_timeout: Seconds for TCP and TLS set-up (default: ``timeout``).
        interval_s: Seconds between polls of a task or host state.
        clock: Monotonic clock for deadlines (tests inject one).
        sleep: Sleep function for polling.

    Use as a context manager: login on enter, logout in ``finally`` on exit.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int = 443,
        user: str,
        password: str,
        verify: bool | ssl.SSLContext = True,
        timeout: float = 60.0,
        connect_timeout: float | None = None,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._host, self._port = host, port
        self._user, self._password = user, password
        self._verify = verify
        self._timeout = timeout
        self._connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self._interval_s = interval_s
        self._clock, self._sleep = clock, sleep
        self._si: vim.ServiceInstance | None = None
        self.target = f"{host}:{port}"

    def __repr__(self) -> str:
        return f"VSphereClient(target={self.target!r}, user={self._user!r})"

    # -- session ------------------------------------------------------------
    def connect(self) -> None:
        """Log in (a no-op when already connected).

        Raises:
            AuthError: Wrong user name or password.
            TlsError: The certificate is not trusted.
            TransportError: vCenter cannot be reached.
        """
        if self._si is not None:
            return
        tls: dict[str, Any] = {}
        if self._verify is False:
            tls["disableSslCertValidation"] = True
        else:
            tls["sslContext"] = (
                self._verify
                if isinstance(self._verify, ssl.SSLContext)
                else ssl.create_default_context()
            )
        with self._errors(read=True):
            self._si = _connect(
                host=self._host,
                port=self._port,
                user=self._user,
                pwd=self._password,
                httpConnectionTimeout=self._connect_timeout,
                connectionPoolTimeout=self._timeout,
                **tls,
            )

    def close(self) -> None:
        """Log out; errors while logging out are logged, not raised."""
        si, self._si = self._si, None
        if si is not None:
            try:
                _disconnect(si)
            except Exception as exc:  # noqa: BLE001 - logout is best effort
                logger.debug("logout from %s failed: %s", self.target, exc)

    def __enter__(self) -> VSphereClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _errors(self, *, read: bool) -> Iterator[None]:
        try:
            yield
        except RackflowError:
            raise
        except Exception as exc:
            raise translate_error(exc, target=self.target, read=read) from exc

    def _content(self) -> vim.ServiceInstanceContent:
        if self._si is None:
            raise PreconditionError(subject=self.target, reason="not connected: use 'with client'")
        return self._si.RetrieveContent()

    # -- reading ------------------------------------------------------------
    def _collect(
        self, obj: Any, paths: list[str], *, view_type: Any = None
    ) -> list[tuple[Any, dict[str, Any]]]:
        """Read properties of one object, or of every ``view_type`` object under ``obj``."""
        query = _query
        content = self._content()
        view = None
        if view_type is not None:
            if content.viewManager is None:
                raise ProtocolError(target=self.target, detail="vCenter has no view manager")
            view = content.viewManager.CreateContainerView(obj, [view_type], True)
            traverse = query.TraversalSpec(name="view", path="view", skip=False, type=type(view))
            start = query.ObjectSpec(obj=view, skip=True, selectSet=[traverse])
            kind = view_type
        else:
            start, kind = query.ObjectSpec(obj=obj, skip=False), type(obj)
        spec = query.FilterSpec(
            objectSet=[start], propSet=[query.PropertySpec(type=kind, pathSet=paths)]
        )
        collector = content.propertyCollector
        found: list[tuple[Any, dict[str, Any]]] = []
        try:
            result = collector.RetrievePropertiesEx([spec], query.RetrieveOptions())
            while result is not None:
                found += [(o.obj, {p.name: p.val for p in o.propSet}) for o in result.objects]
                token = result.token
                result = collector.ContinueRetrievePropertiesEx(token) if token else None
        finally:
            if view is not None:
                view.Destroy()
        return found

    def _to_host(self, ref: Any, props: dict[str, Any], clusters: dict[str, str]) -> EsxiHost:
        parent = props.get("parent")
        in_cluster = isinstance(parent, vim.ClusterComputeResource)
        cluster_moid = parent._moId if in_cluster and parent is not None else None
        product = props.get("summary.config.product")
        system = props.get("hardware.systemInfo")
        return EsxiHost(
            name=str(props.get("name") or ref._moId),
            moid=ref._moId,
            cluster=clusters.get(cluster_moid) if cluster_moid else None,
            cluster_moid=cluster_moid,
            service_tag=service_tag_of(system),
            serial_number=clean(getattr(system, "serialNumber", None)),
            esxi_version=clean(getattr(product, "version", None)),
            build=clean(getattr(product, "build", None)),
            connection_state=str(props.get("runtime.connectionState") or "unknown"),
            in_maintenance=bool(props.get("runtime.inMaintenanceMode")),
            vendor=clean(getattr(system, "vendor", None)),
            model=clean(getattr(system, "model", None)),
        )

    def _cluster_names(self) -> dict[str, str]:
        root = self._content().rootFolder
        found = self._collect(root, ["name"], view_type=vim.ClusterComputeResource)
        return {ref._moId: str(props.get("name")) for ref, props in found}

    def hosts(self) -> list[EsxiHost]:
        """Read every ESXi host vCenter manages, in one property-collector pass.

        Returns:
            Hosts sorted by name.

        Raises:
            TransportError: vCenter became unreachable.
        """
        with self._errors(read=True):
            clusters = self._cluster_names()
            found = self._collect(
                self._content().rootFolder, _HOST_PROPERTIES, view_type=vim.HostSystem
            )
            hosts = [self._to_host(ref, props, clusters) for ref, props in found]
        return sorted(hosts, key=lambda h: h.name)

    def host(self, moid: str) -> EsxiHost:
        """Read one host by managed object id.

        Args:
            moid: E.g. ``host-17``.

        Returns:
            The host.

        Raises:
            NotFoundError: No such host.
        """
        with self._errors(read=True):
            ref = _HostSystem(moid, self._stub())
            found = self._collect(ref, _HOST_PROPERTIES)
            if not found:
                raise NotFoundError(status=404, message=f"no host {moid}", target=self.target)
            parent = found[0][1].get("parent")
            clusters: dict[str, str] = {}
            if isinstance(parent, vim.ClusterComputeResource):
                name = self._collect(parent, ["name"])
                clusters = {parent._moId: str(name[0][1].get("name"))} if name else {}
            return self._to_host(ref, found[0][1], clusters)

    def _stub(self) -> Any:
        if self._si is None:
            raise PreconditionError(subject=self.target, reason="not connected: use 'with client'")
        return self._si._stub

    def cluster_unavailable(self, cluster: str) -> list[str]:
        """Hosts of a cluster that carry no workloads: in maintenance or not connected.

        Args:
            cluster: Cluster name or moid.

        Returns:
            Their names, sorted.
        """
        return sorted(
            h.name
            for h in self.hosts()
            if cluster in (h.cluster, h.cluster_moid) and not h.available
        )

    # -- acting -------------------------------------------------------------
    def enter_maintenance(
        self, moid: str, *, timeout_s: float, options: MaintenanceOptions | None = None
    ) -> bool:
        """Put a host in maintenance mode and wait for it (check-then-act).

        vCenter is given the same timeout (it then fails the task with
        Timedout); our own deadline, slightly later, cancels the task.

        Args:
            moid: Host moid.
            timeout_s: Deadline for the whole operation.
            options: Evacuation (powered-off VMs, vSAN data); None: vCenter's defaults.

        Returns:
            True if the host entered now, False if it already was in maintenance.

        Raises:
            DeadlineExceeded: Not in maintenance before the deadline.
            PreconditionError: vCenter refused (host not connected, wrong state).
            JobFailedError: The task failed otherwise.
        """
        options = options or MaintenanceOptions()
        host = self.host(moid)
        if host.in_maintenance:
            logger.info("%s is already in maintenance mode", host.name)
            return False
        extra: dict[str, Any] = {}
        if options.vsan_mode is not None:
            # Sent only when asked: without it vCenter applies its own vSAN default.
            extra["maintenanceSpec"] = _MaintenanceSpec(
                vsanMode=_DecommissionMode(objectAction=options.vsan_mode)
            )
        with self._errors(read=False):
            task = _HostSystem(moid, self._stub()).EnterMaintenanceMode_Task(
                timeout=max(1, math.ceil(timeout_s)),
                evacuatePoweredOffVms=options.evacuate_powered_off_vms,
                **extra,
            )
        self._wait_task(
            task, subject=host.name, operation="enter maintenance mode", timeout_s=timeout_s
        )
        return True

    def exit_maintenance(self, moid: str, *, timeout_s: float) -> bool:
        """Take a host out of maintenance mode and wait for it (check-then-act).

        Args:
            moid: Host moid.
            timeout_s: Deadline for the whole operation.

        Returns:
            True if the host left now, False if it was not in maintenance.

        Raises:
            DeadlineExceeded: Still in maintenance at the deadline.
            PreconditionError: vCenter refused (host not connected, wrong state).
            JobFailedError: The task failed otherwise.
        """
        host = self.host(moid)
        if not host.in_maintenance:
            logger.info("%s is not in maintenance mode", host.name)
            return False
        with self._errors(read=False):
            task = _HostSystem(moid, self._stub()).ExitMaintenanceMode_Task(
                timeout=max(1, math.ceil(timeout_s))
            )
        self._wait_task(
            task, subject=host.name, operation="exit maintenance mode", timeout_s=timeout_s
        )
        return True

    def wait_connected(self, moid: str, *, timeout_s: float) -> EsxiHost:
        """Wait until vCenter reports the host connected (after a reboot, say).

        Unreachable vCenter and transient faults are tolerated until the deadline.

        Args:
            moid: Host moid.
            timeout_s: Deadline.

        Returns:
            The connected host.

        Raises:
            DeadlineExceeded: Not connected at the deadline.
            NotFoundError: No such host.
        """
        started = self._clock()
        deadline = started + timeout_s
        while True:
            try:
                host = self.host(moid)
                if host.connection_state == "connected":
                    return host
                logger.debug("%s is %s", host.name, host.connection_state)
            except (TransportError, ServerError) as exc:
                logger.debug("waiting for %s: %s", moid, exc)
            now = self._clock()
            if now >= deadline:
                raise DeadlineExceeded(operation=f"{moid} connected", waited_s=now - started)
            self._sleep(min(self._interval_s, deadline - now))

    def _wait_task(self, task: Any, *, subject: str, operation: str, timeout_s: float) -> None:
        started = self._clock()
        # vCenter enforces timeout_s itself; ours is the backstop.
        deadline = started + timeout_s + 2 * self._interval_s + 1
        what = f"{operation} on {subject}"
        while True:
            try:
                with self._errors(read=True):
                    info = task.info
                state = str(info.state)
                if state == "success":
                    logger.info("%s: done in %.1f s", what, self._clock() - started)
                    return
                if state == "error":
                    waited = self._clock() - started
                    raise task_failure(
                        info.error,
                        job=str(task._moId),
                        subject=subject,
                        what=what,
                        waited_s=waited,
                        target=self.target,
                    )
            except (TransportError, ServerError) as exc:
                logger.debug("%s: polling failed: %s", what, exc)
            now = self._clock()
            if now >= deadline:
                self._cancel(task, what)
                raise DeadlineExceeded(operation=what, waited_s=now - started)
            self._sleep(min(self._interval_s, deadline - now))

    def _cancel(self, task: Any, what: str) -> None:
        try:
            task.CancelTask()
        except Exception as exc:  # noqa: BLE001 - best effort: the deadline error follows
            logger.warning("%s: could not cancel task %s: %s", what, task._moId, exc)

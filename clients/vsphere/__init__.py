"""vCenter client (pyVmomi): ESXi hosts, their Dell identities, and maintenance mode.

pyVmomi is synchronous, so this client is too (Prefect runs it in worker
threads). Every wait has a monotonic deadline; vSphere faults become
:mod:`clients.errors`:

====================================================  ==========================
vim fault                                             rackflow error
====================================================  ==========================
InvalidLogin, NotAuthenticated, NoPermission          AuthError
ManagedObjectNotFound                                 NotFoundError
TaskInProgress, ConcurrentAccess                      BusyError (retryable)
InvalidState, HostNotConnected (a refused task)       PreconditionError
Timedout (task), our own deadline                     DeadlineExceeded
any other task fault, RequestCanceled                 JobFailedError
any other call fault                                  ServerError
socket errors / TLS failures                          TransportError / TlsError
====================================================  ==========================
"""

from clients.vsphere.client import VSphereClient
from clients.vsphere.faults import translate_error
from clients.vsphere.models import EsxiHost, MaintenanceOptions, VsanMode, service_tag_of

__all__ = [
    "EsxiHost",
    "MaintenanceOptions",
    "VSphereClient",
    "VsanMode",
    "service_tag_of",
    "translate_error",
]

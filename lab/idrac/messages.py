"""Job messages of the simulated iDRAC: (Message, MessageId) pairs in one place.

The ids named in IDRAC.md are Dell's (JCP001, RED001, JCP052, SUP029, RED132,
LC060/LC061); the others are plausible stand-ins in Dell's style. Clients
must key on JobState, not on these texts.
"""

from __future__ import annotations

Msg = tuple[str, str]

CREATED: Msg = ("Job created.", "JCP000")
DOWNLOADING: Msg = ("Downloading the update package.", "RED029")
DOWNLOADED: Msg = ("Package successfully downloaded.", "RED023")
SCHEDULED: Msg = ("Task successfully scheduled.", "JCP001")
RUNNING: Msg = ("Job in progress.", "RED019")
REBOOT_PENDING: Msg = ("Reboot is pending. The update is applied after the reboot.", "RED096")
REBOOT_COMPLETED: Msg = ("Reboot completed. The update was applied.", "RED097")
COMPLETED: Msg = ("Job completed successfully.", "RED001")
TRANSFER_FAILED: Msg = ("Unable to transfer image", "RED002")
BAD_SIGNATURE: Msg = ("Unable to verify Update Package signature.", "RED004")
NOT_APPLICABLE: Msg = (
    "The update package is not applicable to the system or component.",
    "SUP0518",
)
APPLY_FAILED: Msg = ("Unable to complete the firmware update of the component.", "RED007")
HUNG: Msg = ("The Job was in running state and made no progress for the allocated time", "JCP052")
UP_TO_DATE: Msg = (
    "Firmware versions on server match catalog, applicable updates are not present.",
    "SUP029",
)
REPO_PACKAGE_MISSING: Msg = (
    "Unable to download the update package from the repository location.",
    "RED132",
)
CATALOG_FAILED: Msg = ("Unable to download the catalog file from the repository.", "RED133")
CATALOG_INVALID: Msg = ("The catalog file is invalid or corrupt.", "RED134")
LC_READY: Msg = ("Lifecycle Controller Remote Services is ready.", "LC061")
LC_NOT_READY: Msg = ("Lifecycle Controller Remote Services is not ready.", "LC060")
JOB_DELETED: Msg = ("The specified job was deleted", "SUP020")
QUEUE_CLEARED: Msg = ("The specified job queue was cleared", "SUP020")

"""The real-Asterisk test lab (Asterisk 22 from Debian sid in a chroot)."""

from .ami import AmiClient, AmiError, AmiMessage
from .lab import AMI_PORT, PHONES, SIP_PORT, TRUNK, Device, Lab
from .rootfs import LabBuildError, LabError, unavailable_reason
from .sipp import SippProcess, SippResult

__all__ = [
    "AMI_PORT",
    "PHONES",
    "SIP_PORT",
    "TRUNK",
    "AmiClient",
    "AmiError",
    "AmiMessage",
    "Device",
    "Lab",
    "LabBuildError",
    "LabError",
    "SippProcess",
    "SippResult",
    "unavailable_reason",
]

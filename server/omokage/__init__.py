"""omokage: real-time avatar face selection for VR."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1

"""imfcodec: talking-head video at a few kilobits per second, after Implicit Motion Function (IMF)."""
__version__ = "0.1.0"

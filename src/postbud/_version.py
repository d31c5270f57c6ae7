"""The version of postbud, in one place (read by the build and by ``postbud --version``)."""

__version__ = "0.1.0"

"""pair: share a hosted dev container with your teammates over SSH.

This package must stay cheap to import: `pair verify` runs on every SSH login and imports only
the standard library, starting from here.
"""

__version__ = "0.1.0"

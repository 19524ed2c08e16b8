"""GDTS: a distributed cron scheduler. Managers and workers meet only in etcd and MongoDB."""

import os as _os

# The worker forks a process per run; grpc's fork handlers are useless here (children exec bash at
# once) and log a notice on every fork. Must be set before grpc is first imported.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"

"""Real local etcd and mongod servers as child processes, for `gdts dev`, the benchmark and the
tests."""

from gdts.localstack.etcdserver import EtcdProcess
from gdts.localstack.mongoserver import MongoProcess
from gdts.localstack.process import (
    LocalStackError,
    ServerTls,
    find_etcd,
    find_mongod,
    free_port,
    pdeathsig_preexec,
)

__all__ = [
    "EtcdProcess",
    "LocalStackError",
    "MongoProcess",
    "ServerTls",
    "find_etcd",
    "find_mongod",
    "free_port",
    "pdeathsig_preexec",
]

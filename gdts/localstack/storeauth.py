"""Authentication on the local stores, so a job on the same host cannot reach the control plane:
etcd gets a root user and one user that may read and write GDTS's prefix only, mongod an admin
and one user that may read and write GDTS's database only. Both are idempotent: a store that is
already set up is left as it is (its users must then have the passwords given)."""

from __future__ import annotations

from typing import Any

import grpc
from aetcd import rpc, utils
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError

from gdts.localstack.etcdserver import EtcdProcess
from gdts.localstack.mongoserver import MongoProcess
from gdts.localstack.process import LocalStackError

_TIMEOUT_S = 5.0
_MONGO_UNAUTHORIZED = 13
_MONGO_USER_EXISTS = 51003


async def secure_etcd(
    server: EtcdProcess, *, root_password: str, user: str, password: str, prefix: str
) -> None:
    """Make ``user`` (read and write under ``prefix``) and root, then switch authentication on;
    etcd then refuses every request without a user's token."""
    async with grpc.aio.insecure_channel(server.endpoint) as channel:
        try:
            await rpc.KVStub(channel).Range(rpc.RangeRequest(key=b"\0"), timeout=_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if "user name" in (exc.details() or ""):
                return  # authentication is on already
            raise LocalStackError(f"etcd on {server.endpoint} did not answer: {exc}") from exc
        auth = rpc.AuthStub(channel)
        key = prefix.encode()
        steps: list[tuple[Any, Any]] = [
            (auth.RoleAdd, rpc.AuthRoleAddRequest(name="root")),
            (auth.UserAdd, rpc.AuthUserAddRequest(name="root", password=root_password)),
            (auth.UserGrantRole, rpc.AuthUserGrantRoleRequest(user="root", role="root")),
            (auth.RoleAdd, rpc.AuthRoleAddRequest(name=user)),
            (
                auth.RoleGrantPermission,
                rpc.AuthRoleGrantPermissionRequest(
                    name=user,
                    perm=rpc.Permission(
                        permType=rpc.Permission.READWRITE,
                        key=key,
                        range_end=utils.prefix_range_end(key),
                    ),
                ),
            ),
            (auth.UserAdd, rpc.AuthUserAddRequest(name=user, password=password)),
            (auth.UserGrantRole, rpc.AuthUserGrantRoleRequest(user=user, role=user)),
            (auth.AuthEnable, rpc.AuthEnableRequest()),
        ]
        for call, request in steps:
            try:
                await call(request, timeout=_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                # A set-up cut short before auth was enabled: what it made is there already.
                if "already exists" not in (exc.details() or ""):
                    raise LocalStackError(f"cannot set up etcd users: {exc.details()}") from exc


async def secure_mongo(
    server: MongoProcess, *, admin_password: str, user: str, password: str, database: str
) -> None:
    """Make the admin (through mongod's localhost exception, which only holds while there is no
    user) and ``user``, who may read and write ``database`` only. ``server`` runs with auth."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        server.uri, serverSelectionTimeoutMS=int(_TIMEOUT_S * 1000)
    )
    try:
        await client.admin.command("createUser", "admin", pwd=admin_password, roles=["root"])
    except OperationFailure as exc:
        if exc.code not in (_MONGO_UNAUTHORIZED, _MONGO_USER_EXISTS):
            raise LocalStackError(f"cannot create the MongoDB admin: {exc}") from exc
    except PyMongoError as exc:
        raise LocalStackError(f"mongod on {server.endpoint} did not answer: {exc}") from exc
    finally:
        await client.close()
    admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        server.uri_for("admin", admin_password), serverSelectionTimeoutMS=int(_TIMEOUT_S * 1000)
    )
    roles = [{"role": "readWrite", "db": database}]
    try:
        try:
            await admin.admin.command("createUser", user, pwd=password, roles=roles)
        except OperationFailure as exc:
            if exc.code != _MONGO_USER_EXISTS:
                raise
    except PyMongoError as exc:
        raise LocalStackError(f"cannot create the MongoDB user {user!r}: {exc}") from exc
    finally:
        await admin.close()

"""gdts.config: JSON keys, GDTS_* environment overrides, validation, secrets kept out of repr."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gdts.config import ManagerConfig, WorkerConfig, env_var, json_key, load_config
from gdts.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def write(tmp_path: Path) -> Any:
    def _write(data: object, name: str = "config.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return path

    return _write


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "key"),
    [
        ("api_port", "apiPort"),
        ("etcd_endpoints", "etcdEndpoints"),
        ("mongodb_uri", "mongodbUri"),
        ("worker_lease_ttl", "workerLeaseTtl"),
        ("job_log_commit_timeout", "jobLogCommitTimeout"),
        ("webroot", "webroot"),
    ],
)
def test_json_key_is_camel_case(field: str, key: str) -> None:
    assert json_key(field) == key


@pytest.mark.parametrize(
    ("field", "var"),
    [
        ("api_port", "GDTS_API_PORT"),
        ("etcd_endpoints", "GDTS_ETCD_ENDPOINTS"),
        ("webroot", "GDTS_WEBROOT"),
    ],
)
def test_env_var_is_gdts_upper_case(field: str, var: str) -> None:
    assert env_var(field) == var


# --- the repository's own files -----------------------------------------------------------------


def test_repo_manager_json_loads() -> None:
    path = REPO_ROOT / "manager.json"
    config = load_config(ManagerConfig, path, {})
    assert isinstance(config, ManagerConfig)
    assert config.api_port == 8070
    assert config.etcd_endpoints == ("127.0.0.1:2379",)
    assert config.etcd_prefix == "/gdts/"
    assert config.webroot == "./webroot"
    assert config.kill_marker_ttl == 10
    # every key in the file landed on the matching attribute
    by_key = {
        "apiPort": config.api_port,
        "apiReadTimeout": config.api_read_timeout,
        "apiWriteTimeout": config.api_write_timeout,
        "etcdEndpoints": list(config.etcd_endpoints),
        "etcdDialTimeout": config.etcd_dial_timeout,
        "etcdPrefix": config.etcd_prefix,
        "mongodbUri": config.mongodb_uri,
        "mongodbConnectTimeout": config.mongodb_connect_timeout,
        "mongodbDatabase": config.mongodb_database,
        "webroot": config.webroot,
        "killMarkerTtl": config.kill_marker_ttl,
        "secretKeys": list(config.secret_keys),  # none: a real key never goes in the repository
    }
    for key, value in json.loads(path.read_text()).items():
        assert by_key[key] == value, key


def test_repo_worker_json_loads() -> None:
    path = REPO_ROOT / "worker.json"
    config = load_config(WorkerConfig, path, {})
    assert isinstance(config, WorkerConfig)
    assert config.etcd_endpoints == ("127.0.0.1:2379",)
    assert config.bash_path == "/bin/bash"
    assert config.worker_lease_ttl == 10
    assert config.start_window == 10000
    by_key = {
        "etcdEndpoints": list(config.etcd_endpoints),
        "etcdDialTimeout": config.etcd_dial_timeout,
        "etcdPrefix": config.etcd_prefix,
        "mongodbUri": config.mongodb_uri,
        "mongodbConnectTimeout": config.mongodb_connect_timeout,
        "mongodbDatabase": config.mongodb_database,
        "jobLogBatchSize": config.job_log_batch_size,
        "secretKeys": list(config.secret_keys),
        "jobLogCommitTimeout": config.job_log_commit_timeout,
        "bashPath": config.bash_path,
        "workerLeaseTtl": config.worker_lease_ttl,
        "killGracePeriod": config.kill_grace_period,
        "drainTimeout": config.drain_timeout,
        "startWindow": config.start_window,
        "busyWait": config.busy_wait,
        "spillDir": config.spill_dir,
        "httpListen": config.http_listen,
        "logFormat": config.log_format,
    }
    for key, value in json.loads(path.read_text()).items():
        assert by_key[key] == value, key


def test_no_file_gives_the_defaults() -> None:
    config = load_config(ManagerConfig, None, {})
    assert config.api_port == 8070
    assert config.etcd_endpoints == ("127.0.0.1:2379",)
    assert config.etcd_prefix == "/gdts/"


# --- unknown keys and wrong types ---------------------------------------------------------------


def test_unknown_key_stops_naming_the_key(write: Any) -> None:
    path = write({"apiPort": 8070, "etcdEndpoint": ["127.0.0.1:2379"]})
    with pytest.raises(ConfigError, match=r"^config etcdEndpoint: unknown key") as exc:
        load_config(ManagerConfig, path, {})
    assert exc.value.key == "etcdEndpoint"


def test_worker_key_is_unknown_to_the_manager(write: Any) -> None:
    with pytest.raises(ConfigError, match=r"^config workerLeaseTtl: unknown key"):
        load_config(ManagerConfig, write({"workerLeaseTtl": 10}), {})


def test_manager_key_is_unknown_to_the_worker(write: Any) -> None:
    with pytest.raises(ConfigError, match=r"^config apiPort: unknown key"):
        load_config(WorkerConfig, write({"apiPort": 8070}), {})


def test_snake_case_key_is_unknown(write: Any) -> None:
    with pytest.raises(ConfigError, match=r"^config api_port: unknown key"):
        load_config(ManagerConfig, write({"api_port": 8070}), {})


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("apiPort", "8070", "must be an integer"),
        ("apiPort", True, "must be an integer"),
        ("apiPort", 8070.5, "must be an integer"),
        ("apiPort", None, "must be an integer"),
        ("etcdEndpoints", "127.0.0.1:2379", "must be a list of strings"),
        ("etcdEndpoints", [2379, 2380], "must be a list of strings"),
        ("etcdEndpoints", ["127.0.0.1:2379", 2380], "must be a list of strings"),
        ("etcdPrefix", ["/gdts/"], "must be a string"),
        ("webroot", 5, "must be a string"),
    ],
    ids=[
        "port-string",
        "port-true",
        "port-float",
        "port-null",
        "endpoints-string",
        "endpoints-ints",
        "endpoints-mixed",
        "prefix-list",
        "webroot-int",
    ],
)
def test_wrong_type_names_the_key(write: Any, key: str, value: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"^config {key}: {problem}") as exc:
        load_config(ManagerConfig, write({key: value}), {})
    assert exc.value.key == key


def test_list_of_endpoints_becomes_a_tuple(write: Any) -> None:
    path = write({"etcdEndpoints": ["10.0.0.1:2379", "10.0.0.2:2379"]})
    config = load_config(WorkerConfig, path, {})
    assert config.etcd_endpoints == ("10.0.0.1:2379", "10.0.0.2:2379")


# --- environment overrides ----------------------------------------------------------------------


def test_env_integer_override() -> None:
    config = load_config(ManagerConfig, None, {"GDTS_API_PORT": "9000"})
    assert config.api_port == 9000


def test_env_overrides_the_file(write: Any) -> None:
    path = write({"apiPort": 8070, "webroot": "/srv/www"})
    config = load_config(ManagerConfig, path, {"GDTS_API_PORT": "9000", "GDTS_WEBROOT": "/x"})
    assert config.api_port == 9000
    assert config.webroot == "/x"


def test_env_endpoints_are_split_on_commas() -> None:
    config = load_config(WorkerConfig, None, {"GDTS_ETCD_ENDPOINTS": "a:1,b:2"})
    assert config.etcd_endpoints == ("a:1", "b:2")


def test_env_endpoints_ignore_spaces_and_empty_parts() -> None:
    config = load_config(WorkerConfig, None, {"GDTS_ETCD_ENDPOINTS": " a:1 , ,b:2, "})
    assert config.etcd_endpoints == ("a:1", "b:2")


def test_env_endpoints_empty_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^config etcdEndpoints: must list at least one"):
        load_config(WorkerConfig, None, {"GDTS_ETCD_ENDPOINTS": " , "})


def test_env_string_override_keeps_the_text() -> None:
    config = load_config(
        WorkerConfig, None, {"GDTS_WORKER_ID": "node-7", "GDTS_LOG_LEVEL": "debug"}
    )
    assert config.worker_id == "node-7"
    assert config.log_level == "debug"


@pytest.mark.parametrize("text", ["90x0", "", "9.5", "0x10", "nine", "1e3"])
def test_bad_env_integer_names_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^config GDTS_API_PORT: must be an integer") as exc:
        load_config(ManagerConfig, None, {"GDTS_API_PORT": text})
    assert exc.value.key == "GDTS_API_PORT"


def test_env_integer_is_validated_like_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^config workerLeaseTtl: must be at least 2"):
        load_config(WorkerConfig, None, {"GDTS_WORKER_LEASE_TTL": "1"})


def test_unrelated_environment_is_ignored() -> None:
    config = load_config(ManagerConfig, None, {"HOME": "/root", "API_PORT": "1"})
    assert config.api_port == 8070


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_api_port_out_of_range(write: Any, port: int) -> None:
    with pytest.raises(ConfigError, match=rf"^config apiPort: must be 1-65535, got {port}$") as exc:
        load_config(ManagerConfig, write({"apiPort": port}), {})
    assert exc.value.key == "apiPort"


@pytest.mark.parametrize("port", [1, 65535])
def test_api_port_limits_are_accepted(write: Any, port: int) -> None:
    assert load_config(ManagerConfig, write({"apiPort": port}), {}).api_port == port


@pytest.mark.parametrize("days", [-1, 24856])
@pytest.mark.parametrize(
    ("key", "attribute"),
    [("logRetentionDays", "log_retention_days"), ("auditRetentionDays", "audit_retention_days")],
)
def test_retention_days_out_of_range(write: Any, days: int, key: str, attribute: str) -> None:
    with pytest.raises(ConfigError, match=rf"^config {key}: must be 0 .* got {days}$"):
        load_config(ManagerConfig, write({key: days}), {})
    for days in (0, 24855):  # for ever; 2**31 - 1 s, the longest a TTL index takes
        assert getattr(load_config(ManagerConfig, write({key: days}), {}), attribute) == days


def test_retention_interval_must_be_positive(write: Any) -> None:
    with pytest.raises(ConfigError, match=r"^config retentionInterval: "):
        load_config(ManagerConfig, write({"retentionInterval": 0}), {})


def test_worker_lease_ttl_of_one_second_is_rejected(write: Any) -> None:
    with pytest.raises(ConfigError, match=r"^config workerLeaseTtl: must be at least 2 s, got 1"):
        load_config(WorkerConfig, write({"workerLeaseTtl": 1}), {})
    assert load_config(WorkerConfig, write({"workerLeaseTtl": 2}), {}).worker_lease_ttl == 2


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (ManagerConfig, "etcdDialTimeout", -1),
        (ManagerConfig, "mongodbConnectTimeout", 0),
        (ManagerConfig, "apiReadTimeout", -5000),
        (ManagerConfig, "apiWriteTimeout", 0),
        (ManagerConfig, "killMarkerTtl", -10),
        (WorkerConfig, "etcdDialTimeout", -1),
        (WorkerConfig, "jobLogCommitTimeout", -1),
        (WorkerConfig, "jobLogBatchSize", 0),
        (WorkerConfig, "jobLogBufferLimit", -1),
        (WorkerConfig, "killGracePeriod", -1),
        (WorkerConfig, "drainTimeout", -30000),
        (WorkerConfig, "startWindow", 0),
        (WorkerConfig, "outputLimit", -1),
    ],
)
def test_non_positive_values_are_rejected(write: Any, cls: type, key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"^config {key}: must be positive, got {value}$") as exc:
        load_config(cls, write({key: value}), {})
    assert exc.value.key == key


def test_worker_id_with_slash_is_rejected(write: Any) -> None:
    with pytest.raises(ConfigError, match=r"^config workerId: must not contain '/'") as exc:
        load_config(WorkerConfig, write({"workerId": "host/1"}), {})
    assert exc.value.key == "workerId"


def test_worker_id_with_slash_from_env_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^config workerId: must not contain '/'"):
        load_config(WorkerConfig, None, {"GDTS_WORKER_ID": "a/b"})


def test_empty_etcd_endpoints_list_is_rejected(write: Any) -> None:
    with pytest.raises(ConfigError, match=r"^config etcdEndpoints: must list at least one"):
        load_config(ManagerConfig, write({"etcdEndpoints": []}), {})


def test_bad_log_level_is_rejected(write: Any) -> None:
    with pytest.raises(
        ConfigError, match=r"^config logLevel: must be DEBUG, INFO, WARNING or ERROR"
    ):
        load_config(ManagerConfig, write({"logLevel": "verbose"}), {})
    assert load_config(ManagerConfig, write({"logLevel": "warning"}), {}).log_level == "warning"


# --- unreadable files ---------------------------------------------------------------------------


def test_missing_file_gives_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match=r"absent\.json: cannot be read") as exc:
        load_config(ManagerConfig, path, {})
    assert exc.value.key == str(path)


@pytest.mark.parametrize("text", ["{", "", "{'apiPort': 1}", '{"apiPort": 8070,}', "nope"])
def test_invalid_json_gives_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"broken\.json: is not valid JSON") as exc:
        load_config(WorkerConfig, path, {})
    assert exc.value.key == str(path)


@pytest.mark.parametrize("data", [[], ["apiPort"], 8070, "x", None])
def test_non_object_json_gives_config_error(write: Any, data: object) -> None:
    with pytest.raises(ConfigError, match=r"config\.json: must hold a JSON object"):
        load_config(ManagerConfig, write(data), {})


def test_directory_instead_of_file_gives_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(ManagerConfig, tmp_path, {})


# --- secrets ------------------------------------------------------------------------------------

PASSWORD = "hunter2-etcd-pw"
MONGO_SECRET = "s3cr3t-mongo-pw"
MONGO_URI = f"mongodb://admin:{MONGO_SECRET}@db.internal:27017/?authSource=admin"


@pytest.mark.parametrize("cls", [ManagerConfig, WorkerConfig])
def test_secrets_are_not_in_repr(write: Any, cls: type) -> None:
    path = write({"etcdUsername": "root", "etcdPassword": PASSWORD, "mongodbUri": MONGO_URI})
    config = load_config(cls, path, {})
    assert config.etcd_password == PASSWORD
    assert config.mongodb_uri == MONGO_URI
    for text in (repr(config), str(config)):
        assert PASSWORD not in text
        assert MONGO_SECRET not in text
        assert "db.internal" not in text
        assert "etcd_username='root'" in text  # the repr is there, only secrets are left out


def test_secrets_from_env_are_not_in_repr() -> None:
    env = {"GDTS_ETCD_PASSWORD": PASSWORD, "GDTS_MONGODB_URI": MONGO_URI}
    config = load_config(WorkerConfig, None, env)
    assert config.etcd_password == PASSWORD
    assert PASSWORD not in repr(config)
    assert MONGO_SECRET not in repr(config)


def test_default_timezone_is_checked_and_kept(write: Any) -> None:
    assert load_config(ManagerConfig, write({}), {}).default_timezone == "UTC"
    config = load_config(ManagerConfig, write({"defaultTimezone": "Europe/Berlin"}), {})
    assert config.default_timezone == "Europe/Berlin"
    with pytest.raises(ConfigError, match=r"^config defaultTimezone: unknown time zone") as exc:
        load_config(ManagerConfig, write({"defaultTimezone": "Europe/Atlantis"}), {})
    assert exc.value.key == "defaultTimezone"


def test_run_slots_default_per_core_and_never_past_the_uid_range() -> None:
    import os

    assert WorkerConfig().run_slots() == 256 * (os.cpu_count() or 1)
    assert WorkerConfig(max_concurrent_runs=7).run_slots() == 7
    assert WorkerConfig(run_uid_range="61000-61009").run_slots() == 10
    with pytest.raises(ConfigError, match="maxConcurrentRuns.*holds 10"):
        WorkerConfig(run_uid_range="61000-61009", max_concurrent_runs=11).validate()
    with pytest.raises(ConfigError, match="maxConcurrentRuns"):
        WorkerConfig(max_concurrent_runs=-1).validate()


def test_run_limits_are_checked_as_a_job_s_would_be() -> None:
    config = WorkerConfig(run_memory_mb=512, max_run_open_files=2048)
    config.validate()
    assert config.run_limit_defaults().memory_mb == 512
    assert config.run_limit_defaults().processes == 512  # the default, against fork bombs
    assert config.run_limit_ceilings().open_files == 2048
    with pytest.raises(ConfigError, match="runOpenFiles: must be an integer from 8"):
        WorkerConfig(run_open_files=4).validate()
    with pytest.raises(ConfigError, match="maxRunCpuSeconds: must be 0"):
        WorkerConfig(max_run_cpu_seconds=-5).validate()


# --- secretKeys ---------------------------------------------------------------------------------

_KEY = base64.b64encode(bytes(range(32))).decode()


def test_secret_keys_come_from_the_file_or_the_environment_which_replaces_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "worker.json"
    path.write_text(json.dumps({"secretKeys": [{"id": "k1", "key": _KEY}]}))
    assert load_config(WorkerConfig, path, {}).secret_key_ring().key_ids() == ("k1",)
    both = json.dumps([{"id": "k2", "key": _KEY}, {"id": "k1", "key": _KEY}])
    config = load_config(ManagerConfig, None, {"GDTS_SECRET_KEYS": both})
    assert config.secret_key_ring().key_ids() == ("k2", "k1")
    assert load_config(WorkerConfig, path, {"GDTS_SECRET_KEYS": "[]"}).secret_key_ring().keys == ()
    assert _KEY not in repr(config)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GDTS_SECRET_KEYS": "k1:abc"}, r"GDTS_SECRET_KEYS: must be a JSON list of objects"),
        ({"GDTS_SECRET_KEYS": '{"id": "k1"}'}, r"GDTS_SECRET_KEYS: must be a list of objects"),
        ({"GDTS_SECRET_KEYS": '[{"id": "k1", "key": "c2hvcnQ="}]'},
         r"secretKeys\[0\]: key of 'k1' must be the base64 of 32 random bytes"),
    ],
)  # fmt: skip
def test_bad_secret_keys_stop_the_start_naming_the_key(environ: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(WorkerConfig, None, environ)

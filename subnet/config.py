"""Typed configuration: built-in defaults < ``subnet.toml`` < ``SUBNET_*`` environment < CLI flags.

The configuration is a tree of frozen dataclasses, one per section (``[chain]``, ``[wallet]``,
``[scoring]``, ...), whose fields are declared with :func:`scoring.params.param` (help text and
accepted range). ``subnet.toml`` is what a subnet owner publishes: the scoring and incentive
constants every validator runs. Everything is validated when loaded; an unknown key or a bad
value raises :class:`~subnet.errors.ConfigError` naming the key, where it came from and the
accepted range, so the CLI can print one line instead of a traceback.

Environment variables use a double underscore between section and key:
``SUBNET_SCORING__W_KL=0.5``. Variables without a double underscore (``SUBNET_CACHE``,
``SUBNET_CONFIG``) are not configuration keys and are ignored here.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from scoring.config import ScoreConfig, SpeedConfig, VerifyConfig, WeightsConfig
from scoring.params import ParamError, check_value, describe_range, param
from subnet.errors import ConfigError

ENV_PREFIX = "SUBNET_"
CONFIG_ENV = "SUBNET_CONFIG"
DEFAULT_CONFIG_NAME = "subnet.toml"


@dataclass(frozen=True)
class ChainConfig:
    network: str = param(
        "devnet:.devnet/devnet.sqlite",
        "devnet:PATH (embedded chain), local, test, finney, or a ws(s):// URL",
    )
    netuid: int = param(1, "subnet id", lo=0, hi=65535)


@dataclass(frozen=True)
class WalletConfig:
    name: str = param("default", "wallet (coldkey) name")
    hotkey: str = param("default", "hotkey name inside the wallet")
    path: str = param(
        "~/.bittensor/wallets",
        "folder holding wallets (left at this default on a devnet: the devnet's own wallets/)",
    )
    password_file: str = param("", "file with the coldkey password (else BT_WALLET_PASSWORD)")


@dataclass(frozen=True)
class MinerConfig:
    """The miner node: where it listens and the limits it enforces on every caller."""

    engine: str = param("vllm", "inference engine", choices=("vllm", "hf"))
    host: str = param("0.0.0.0", "address the HTTP server binds")
    port: int = param(8091, "HTTP port (also announced on chain)", lo=1, hi=65535)
    external_ip: str = param(
        "", "IP announced on chain; empty: 127.0.0.2 on local/devnet networks, else required"
    )
    state_dir: str = param(
        "~/.local/share/distill-subnet/miner",
        "folder for node state (replay-protection store, per-hotkey lock, log file)",
    )
    max_body_bytes: int = param(1 << 20, "largest request body accepted (413 above)", lo=1024)
    max_tokens: int = param(1024, "largest max_tokens a request may ask for", lo=1)
    max_logprobs: int = param(20, "largest logprobs k a request may ask for", lo=0, hi=1000)
    rate_limit_rps: float = param(10.0, "per-hotkey sustained requests per second", lo=0.001)
    rate_limit_burst: int = param(40, "per-hotkey burst size (token bucket capacity)", lo=1)
    max_concurrency: int = param(64, "requests served at once (engine calls in flight)", lo=1)
    max_queue: int = param(256, "requests waiting for a slot before 429 (stake-ordered)", lo=0)
    model_transfers: int = param(
        2, "committed-model file transfers served at once (validators queue by stake)", lo=1
    )
    min_validator_stake: float = param(0.0, "least stake (alpha) a caller needs", lo=0.0)
    require_validator_permit: bool = param(True, "only callers with a validator permit")
    auth_max_age: float = param(10.0, "btauth/1 freshness window in seconds", lo=0.1)
    auth_allowed_skew: float = param(2.0, "btauth/1 forward clock skew allowed, seconds", lo=0.0)
    request_timeout: float = param(120.0, "seconds a request may take end to end", lo=0.1)
    header_timeout: float = param(
        10.0, "seconds a connection has to send complete request headers (408 after)", lo=0.1
    )
    body_timeout: float = param(
        10.0, "seconds a request has to send its whole body, before auth (408 after)", lo=0.1
    )
    keepalive_timeout: float = param(
        75.0, "seconds an idle kept-alive connection stays open", lo=0.1
    )
    max_connections: int = param(1024, "open connections at once (503 and close above)", lo=1)
    max_connections_per_source: int = param(
        128, "open connections at once from one source address (503 and close above)", lo=1
    )
    metrics_host: str = param("127.0.0.1", "address the Prometheus /metrics port binds")
    metrics_port: int = param(
        0, "Prometheus /metrics port, separate from the serving port (0 = off)", lo=0, hi=65535
    )
    endpoint_check: float = param(
        60.0,
        "least seconds between re-announcements when the chain shows another endpoint for this "
        "hotkey (checked at every metagraph refresh)",
        lo=1.0,
    )
    metagraph_refresh: float = param(12.0, "seconds between caller-policy metagraph reads", lo=0.1)
    shutdown_grace: float = param(30.0, "seconds to finish in-flight requests on shutdown", lo=0.0)


@dataclass(frozen=True)
class ValidatorConfig:
    """The validator node: what it asks miners each step, how it verifies and sets weights."""

    teacher: str = param("", "teacher model: a local HF folder (required to run)")
    engine: str = param("vllm", "engine of teacher and spot checks", choices=("vllm", "hf"))
    state_dir: str = param(
        "~/.local/share/distill-subnet/validator",
        "folder for the state database (scores, EMA, evidence) and the log file",
    )
    tasks_per_step: int = param(4, "prompts per step; each miner answers all", lo=1, hi=4096)
    # The names of distill.tasks.FAMILIES (the validator checks them when it starts; the shared
    # plumbing cannot import distill, which builds on it).
    task_families: tuple[str, ...] = param(
        ("add", "sort", "reverse", "count", "copy"),
        "task families prompts are drawn from (a list; --set takes a comma list)",
    )
    prompt_sources: tuple[str, ...] = param(
        ("synthetic",),
        "where prompts come from: 'synthetic' (the task families) and prompt files (.jsonl, "
        ".parquet, a datasets save_to_disk folder), each with an optional '@WEIGHT'",
    )
    prompt_window: int = param(
        32, "steps a prompt is not asked again for (by content digest; 0 = off)", lo=0
    )
    skip_bad_rows: bool = param(
        False, "leave out (and count) bad prompt-file rows instead of refusing to start"
    )
    sample_miners: int = param(0, "miners queried per step (0 = every uid with an endpoint)", lo=0)
    step_blocks: int = param(1, "blocks between steps (driven by chain blocks)", lo=1)
    max_tokens: int = param(16, "max_tokens asked of miners (and of the teacher's reference)", lo=1)
    top_k: int = param(20, "top-k logprobs asked of miners and of the teacher", lo=1, hi=1000)
    temperature: float = param(1.0, "sampling temperature asked of miners", lo=0.0, hi=2.0)
    query_timeout: float = param(10.0, "seconds a miner has for one whole streamed answer", lo=0.01)
    max_response_bytes: int = param(4 << 20, "larger streamed answers are cut off", lo=1024)
    concurrency: int = param(64, "miner queries in flight at once", lo=1)
    score_batch: int = param(
        128, "most answers per teacher micro-batch (scored while others arrive)", lo=1, hi=65536
    )
    score_batch_min: int = param(
        32, "fewest answers per teacher micro-batch while answers still arrive", lo=1, hi=65536
    )
    weights_interval: int = param(0, "blocks between weight sets (0 = the subnet tempo)", lo=0)
    weights_retries: int = param(3, "attempts per weight set before failing it", lo=1, hi=100)
    weights_backoff: float = param(1.0, "seconds before the first retry (then doubling)", lo=0.0)
    model_roots: str = param(
        "", "comma-separated local folders holding committed models (optional: models are fetched)"
    )
    model_cache: int = param(2, "committed models kept loaded at once (LRU)", lo=1, hi=64)
    model_cache_dir: str = param(
        "", "disk cache of fetched committed models ('' = <state_dir>/models)"
    )
    model_cache_bytes: int = param(
        64 << 30, "bytes the model disk cache may hold (least recently used evicted)", lo=1 << 20
    )
    fetch_concurrency: int = param(2, "committed models downloaded at once", lo=1, hi=64)
    fetch_stall_timeout: float = param(
        60.0, "seconds a model download may stall before it is retried (resuming)", lo=1.0
    )
    model_grace_steps: int = param(
        100,
        "steps a newly seen commitment may stay unverified before its answers score 0",
        lo=0,
        hi=10**7,
    )
    startup_fetch_wait: float = param(
        60.0, "seconds to wait at startup for committed models before the first step", lo=0.0
    )
    hf_endpoint: str = param(
        "", "Hugging Face endpoint for hf sources ('' = HF_ENDPOINT or the hub)"
    )
    secret_epoch_blocks: int = param(
        0, "blocks per spot-check secret (0 = the subnet tempo)", lo=0, hi=10**7
    )
    evidence_step_bytes: int = param(
        256 << 10, "signed evidence kept per miner and step (proven lies first)", lo=1024
    )
    evidence_keep_steps: int = param(1000, "steps ordinary evidence is kept", lo=1)
    evidence_keep_lie_steps: int = param(100_000, "steps evidence of a proven lie is kept", lo=1)
    evidence_max_bytes: int = param(
        512 << 20, "bytes of evidence kept in all (oldest ordinary evidence goes first)", lo=1 << 20
    )
    baseline: str = param("", "reference student folder scored every step as a sanity baseline")
    metrics_port: int = param(0, "Prometheus /metrics port (0 = off)", lo=0, hi=65535)
    metrics_host: str = param("127.0.0.1", "address the Prometheus /metrics port binds")
    shutdown_grace: float = param(30.0, "seconds to finish the step in flight on shutdown", lo=0.0)
    export_port: int = param(
        0, "public score export: GET /scores, per-step CSV, HTML page (0 = off)", lo=0, hi=65535
    )
    export_host: str = param("127.0.0.1", "address the score export binds (0.0.0.0: public)")
    organic_per_step: int = param(
        32, "organic answers from the gateway's inbox verified per step (the rest wait)", lo=0
    )

    def __post_init__(self) -> None:
        # An empty list would fail every step, so it fails at load instead (unknown names fail
        # when the validator starts: neurons.validator.main.check_config).
        if not self.task_families or not all(f.strip() for f in self.task_families):
            raise ValueError(
                f"task_families: expected a non-empty list, got {list(self.task_families)!r}"
            )
        if not self.prompt_sources or not all(s.strip() for s in self.prompt_sources):
            raise ValueError(
                f"prompt_sources: expected a non-empty list, got {list(self.prompt_sources)!r}"
            )


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway: an OpenAI-compatible API for users, run next to a validator (same wallet,
    same ``validator.state_dir``, whose scores route each request)."""

    host: str = param("127.0.0.1", "address the gateway's HTTP server binds")
    port: int = param(8080, "the gateway's HTTP port", lo=1, hi=65535)
    state_dir: str = param(
        "~/.local/share/distill-subnet/gateway", "folder for API keys, usage and the organic inbox"
    )
    model_name: str = param("distill-subnet", "the model id users ask for (GET /v1/models)")
    top_n: int = param(3, "a request goes to one of the N best-scored miners (EMA-weighted)", lo=1)
    max_attempts: int = param(3, "miners tried per request before giving up (failover)", lo=1)
    first_token_timeout: float = param(
        10.0, "seconds a miner has to send its first token before failover", lo=0.01
    )
    idle_timeout: float = param(
        10.0, "seconds between two chunks of a miner before failover", lo=0.01
    )
    request_timeout: float = param(120.0, "seconds a request may take end to end", lo=0.1)
    failure_cooldown: float = param(
        30.0, "seconds a miner that failed is tried only after the others", lo=0.0
    )
    max_tokens: int = param(256, "largest max_tokens a request may ask for", lo=1)
    default_max_tokens: int = param(64, "max_tokens when a request names none", lo=1)
    max_body_bytes: int = param(1 << 20, "largest request body accepted (413 above)", lo=1024)
    key_rps: float = param(2.0, "a new key's sustained requests per second", lo=0.001)
    key_burst: int = param(10, "a new key's burst (token bucket capacity)", lo=1)
    key_token_quota: int = param(0, "a new key's total token quota (0 = unlimited)", lo=0)
    organic_fraction: float = param(
        0.1,
        "fraction of signed organic answers handed to the validator for a spot check",
        lo=0.0,
        hi=1.0,
    )
    inbox_max_rows: int = param(2000, "organic answers kept waiting for the validator", lo=1)
    refresh_interval: float = param(
        12.0, "seconds between reads of the metagraph and the validator's scores", lo=0.1
    )
    shutdown_grace: float = param(30.0, "seconds to finish in-flight requests on shutdown", lo=0.0)


@dataclass(frozen=True)
class SubnetConfig:
    """The whole configuration; each field is one section of ``subnet.toml``."""

    chain: ChainConfig = dataclasses.field(default_factory=ChainConfig)
    wallet: WalletConfig = dataclasses.field(default_factory=WalletConfig)
    scoring: ScoreConfig = dataclasses.field(default_factory=ScoreConfig)
    verify: VerifyConfig = dataclasses.field(default_factory=VerifyConfig)
    weights: WeightsConfig = dataclasses.field(default_factory=WeightsConfig)
    speed: SpeedConfig = dataclasses.field(default_factory=SpeedConfig)
    miner: MinerConfig = dataclasses.field(default_factory=MinerConfig)
    validator: ValidatorConfig = dataclasses.field(default_factory=ValidatorConfig)
    gateway: GatewayConfig = dataclasses.field(default_factory=GatewayConfig)


_SECTIONS: Mapping[str, type[Any]] = MappingProxyType(
    {
        "chain": ChainConfig,
        "wallet": WalletConfig,
        "scoring": ScoreConfig,
        "verify": VerifyConfig,
        "weights": WeightsConfig,
        "speed": SpeedConfig,
        "miner": MinerConfig,
        "validator": ValidatorConfig,
        "gateway": GatewayConfig,
    }
)


def sections() -> Mapping[str, type[Any]]:
    """Section name -> its dataclass type, in declaration order."""
    return _SECTIONS


def declared_keys() -> dict[str, dataclasses.Field[Any]]:
    """Every configurable key as ``section.key`` -> its declared field."""
    keys: dict[str, dataclasses.Field[Any]] = {}
    for name, cls in sections().items():
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                keys[f"{name}.{f.name}"] = f
    return keys


def parse_text(key: str, f: dataclasses.Field[Any], text: str) -> Any:
    """Convert a string (environment or ``--set``) to the field's type."""
    kind: type[Any] = type(f.default)
    raw = text.strip()
    try:
        if kind is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is tuple:
            return tuple(p.strip() for p in raw.split(",") if p.strip())
    except ValueError:
        raise ConfigError(
            f"{key}: cannot read {text!r} as {kind.__name__} (expected {describe_range(f)})"
        ) from None
    return raw


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except PermissionError:
        raise ConfigError(f"config file not readable: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a file: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def _flatten_toml(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    known = sections()
    flat: dict[str, Any] = {}
    for section, body in data.items():
        if section not in known:
            raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(known)})")
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table of keys")
        for key, value in body.items():
            flat[f"{section}.{key}"] = value
    return flat


def resolve_config_path(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """``--config`` beats ``$SUBNET_CONFIG`` beats ``./subnet.toml`` (if present)."""
    if explicit:
        return Path(explicit).expanduser()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SubnetConfig:
    """Build the configuration from every layer, validating each value where it comes from.

    ``overrides`` are CLI values keyed ``section.key``; strings are parsed like environment
    values, other types are checked as given.
    """
    env = os.environ if env is None else env
    keys = declared_keys()
    layers: list[tuple[str, dict[str, Any]]] = []

    config_path = resolve_config_path(path, env)
    if config_path is not None:
        layers.append((str(config_path), _flatten_toml(_read_toml(config_path), str(config_path))))

    env_layer: dict[str, Any] = {}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        section, _, key = var[len(ENV_PREFIX) :].lower().partition("__")
        dotted = f"{section}.{key}"
        if dotted not in keys:
            raise ConfigError(f"environment {var}: unknown key {dotted!r}")
        env_layer[dotted] = text
    layers.append(("environment", env_layer))
    layers.append(("command line", dict(overrides or {})))

    values: dict[str, Any] = {}
    for origin, layer in layers:
        from_text = origin != str(config_path)  # TOML values are typed; env/CLI values are text
        for dotted, given in layer.items():
            if dotted not in keys:
                raise ConfigError(f"{origin}: unknown key {dotted!r}{_suggest(dotted, keys)}")
            f = keys[dotted]
            try:
                value = given
                if from_text and isinstance(given, str) and not isinstance(f.default, str):
                    value = parse_text(dotted, f, given)
                values[dotted] = check_value(dotted, f, value)
            except (ParamError, ConfigError) as e:
                raise ConfigError(f"{origin}: {e}") from None
    return _build(values)


def _build(values: Mapping[str, Any]) -> SubnetConfig:
    built: dict[str, Any] = {}
    for name, cls in sections().items():
        prefix = name + "."
        kwargs = {k.removeprefix(prefix): v for k, v in values.items() if k.startswith(prefix)}
        try:
            built[name] = cls(**kwargs)
        except (ParamError, ValueError) as e:
            raise ConfigError(f"[{name}]: {e}") from None
    return SubnetConfig(**built)


def _suggest(dotted: str, keys: Mapping[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(dotted, list(keys), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def to_toml(config: SubnetConfig) -> str:
    """Render a configuration as documented TOML (each key with its help and range)."""
    lines: list[str] = []
    for name, cls in sections().items():
        section = getattr(config, name)
        lines.append(f"[{name}]")
        for f in dataclasses.fields(cls):
            if "help" not in f.metadata:
                continue
            lines.append(f"# {f.metadata['help']} ({describe_range(f)})")
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)

"""The `sparsebench` command: a Hydra app, with every sweep cell validated before anything runs.

    sparsebench policy=lserve task=needle model=tiny_llama
    sparsebench -m policy=full,lserve,quest task=needle
    sparsebench --cfg job policy=lserve

Bad input (an unknown group choice, a wrong type, an unknown key, a value a policy, task or
model rejects) stops the command before any model loads: one line on stderr naming the key,
the value and what is allowed, exit code 2. During a sweep, a cell that fails at run time is
recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import itertools
import sys

import hydra
from omegaconf import DictConfig

from sparsebench.config import is_schema, register_configs
from sparsebench.errors import ConfigError

CONFIG_MODULE = "sparsebench.conf"
MAX_VALIDATED_CELLS = 512


def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sparsebench.runner import build, record_failure, run

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        spec = build(cfg)
    except ConfigError as e:
        if multirun:
            record_failure(cfg, e)
            print(e.one_line(), file=sys.stderr)
            return
        print(e.one_line(), file=sys.stderr)
        sys.exit(2)
    result = run(spec)
    if result.get("status") != "ok" and not multirun:
        sys.exit(1)


app = hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name="config", version_base="1.3")(_app)


# ---------------------------------------------------------------------------------------
# Validation before Hydra runs anything


def _parse_args(argv: list[str]):
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    return args


def _cells(overrides: list[str]) -> list[list[str]]:
    """Every combination of a sweep's values (one list of overrides per cell)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(c) for c in itertools.islice(itertools.product(*choices), MAX_VALIDATED_CELLS)]


def sweep_safe(argv: list[str]) -> list[str]:
    """In a multirun, Hydra composes the base config with every plain override before it sweeps, so
    `-m policy=quest,lserve policy.budget=512` would fail on the default policy (full has no budget).
    A plain override under a swept config group becomes a one-value sweep, `policy.budget=choice(512)`,
    which applies per cell with the same meaning."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = _parse_args(argv)
    if not args.multirun or not args.overrides:
        return argv
    parsed = OverridesParser.create().parse_overrides(args.overrides)
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override() and "." not in o.get_key_element()}
    out = list(argv)
    for o in parsed:
        key = o.get_key_element()
        if (not o.is_sweep_override() and not o.is_delete() and "." in key and key.split(".")[0] in swept
                and o.input_line in out):
            out[out.index(o.input_line)] = f"{key}=choice({o.get_value_element_as_str()})"
    return out


def _group_options(group: str) -> list[str]:
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    return sorted(o for o in loader.get_group_options(group) if not is_schema(o))


def _keys_of(node: str, overrides: list[str]) -> list[str]:
    """Keys of a config node, composed with the other overrides (for 'unknown key' messages)."""
    from hydra import compose

    try:
        cfg = compose(config_name="config", overrides=overrides)
        for part in [p for p in node.split(".") if p]:
            cfg = cfg[part]
        return sorted(cfg.keys())
    except Exception:
        return []


def _one_line(err: Exception, overrides: list[str]) -> str:
    """Turn a Hydra / OmegaConf composition error into one line naming the key, value and what is allowed."""
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

    chain, e = [], err
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, MissingConfigException) and getattr(e, "missing_cfg_file", None):
            group, _, value = e.missing_cfg_file.rpartition("/")
            allowed = _group_options(group) if group else []
            return ConfigError(group.replace("/", "."), value, "one of " + ", ".join(allowed)).one_line()
    for e in chain:
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            key = e.full_key
            value = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").split("=", 1)[0] == key), None)
            msg = str(getattr(e, "msg", e)).splitlines()[0]
            leaf = key.rpartition(".")[2]
            if isinstance(e, ConfigKeyError) or "not in" in msg:
                parent = key.rpartition(".")[0]
                keys = _keys_of(parent, [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != key])
                return ConfigError(key, value, f"a known key: '{leaf}' is not a key of {parent or 'the config'}"
                                   + (f" (keys: {', '.join(keys)})" if keys else "")).one_line()
            if isinstance(e, ValidationError):
                return ConfigError(key, value, f"a value of the right type ({msg})").one_line()
            return f"sparsebench: error: {key}={value!r}: {msg}"
    for e in chain:
        if isinstance(e, ConfigCompositionException):
            return "sparsebench: error: " + str(e).splitlines()[0]
    return "sparsebench: error: " + str(err).splitlines()[0]


def validate(argv: list[str]) -> int:
    """Compose every cell of the command and build its run (no weights). Returns the number of cells."""
    from hydra import compose, initialize_config_module

    from sparsebench.runner import build

    args = _parse_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion:
        return 0
    cells = _cells(args.overrides) if args.multirun else [args.overrides]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        for cell in cells:
            try:
                cfg = compose(config_name=args.config_name or "config", overrides=cell)
            except Exception as e:  # composition: unknown group choice, key or type
                raise SystemExit(_one_line(e, cell)) from None
            if args.cfg:  # printing the config needs no further checks
                continue
            build(cfg)
    return len(cells)


def main() -> None:
    import warnings

    # our hydra/launcher/*.yaml files carry local defaults for the plugins' launchers; Hydra warns that
    # it matches them to the plugins' schemas by name, which is what we want
    warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema with the same name.*")
    register_configs()
    argv = sweep_safe(sys.argv[1:])
    sys.argv[1:] = argv  # what Hydra parses
    try:
        validate(argv)
    except ConfigError as e:
        print(e.one_line(), file=sys.stderr)
        sys.exit(2)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            sys.exit(2)
        raise
    app()


if __name__ == "__main__":
    main()

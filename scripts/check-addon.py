#!/usr/bin/env python3
"""Checks the Home Assistant add-on in addon/ as the Supervisor would read it.

The rules are transcribed from home-assistant/supervisor at tag 2026.08.0
(commit 0b5b0ce15f30f5881962ccb1abbac329a6556b65; the same files at
090ef31ec024952c2469ed5a7c9f3ce8c1a5499e):
  supervisor/apps/validate.py   _SCHEMA_APP_CONFIG, RE_VOLUME, RE_SERVICE,
                                RE_MACHINE, SCHEMA_APP_TRANSLATIONS
                                (supervisor/addons/validate.py before 2026.05.1)
  supervisor/apps/options.py    RE_SCHEMA_ELEMENT, how option values are checked
  supervisor/apps/const.py      RE_SLUG, MappingType, AppBackupMode
  supervisor/const.py           ARCH_*, AppStartup, AppBootConfig, AppStage, ROLE_ALL
  supervisor/validate.py        network_port, docker_ports, docker_image
  supervisor/docker/const.py    Capabilities
  supervisor/store/validate.py  SCHEMA_REPOSITORY_CONFIG
They are data here so CI needs no network. Stricter than the Supervisor on
purpose: it drops unknown keys silently, this rejects them (a typo would
otherwise just vanish). What it accepts but logs as deprecated is a note.

  python3 scripts/check-addon.py              check addon/ha_fetchers
  python3 scripts/check-addon.py --self-test  broken configs must be rejected
"""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

try:
    import yaml
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pyyaml"], check=True)
    import yaml

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon" / "ha_fetchers"

# --- transcribed from the Supervisor -------------------------------------

ARCH_ALL = ["aarch64", "amd64"]
ARCH_DEPRECATED = ["armhf", "armv7", "i386"]
STARTUP = ["initialize", "system", "services", "application", "once"]
STARTUP_MIGRATED = {"before": "services", "after": "application"}
BOOT = ["auto", "manual", "manual_only"]
STAGE = ["stable", "experimental", "deprecated"]
BACKUP = ["hot", "cold"]
ROLES = ["default", "homeassistant", "backup", "manager", "admin"]
CAPABILITIES = [
    "BPF", "CHECKPOINT_RESTORE", "DAC_READ_SEARCH", "IPC_LOCK", "NET_ADMIN",
    "NET_RAW", "PERFMON", "SYS_ADMIN", "SYS_MODULE", "SYS_NICE", "SYS_PTRACE",
    "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME",
]
MAP_TYPES = [
    "data", "config", "ssl", "local_apps", "backup", "share", "media",
    "homeassistant_config", "all_app_configs", "app_config",
]
# Legacy since 2026.07.1, still accepted; older Supervisors know only these.
MAP_LEGACY = {"addons": "local_apps", "all_addon_configs": "all_app_configs",
              "addon_config": "app_config"}
# Renamed keys the Supervisor migrates, and ignored ones it only logs.
KEYS_MIGRATED = {"auto_uart": "uart", "snapshot": "backup", "snapshot_exclude": "backup_exclude",
                 "snapshot_pre": "backup_pre", "snapshot_post": "backup_post"}
KEYS_IGNORED = ["advanced", "codenotary"]
INGRESS_DYNAMIC_PORTS = (62000, 65500)

RE_SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
RE_VOLUME = re.compile(
    r"^(data|config|ssl|local_apps|addons|backup|share|media|homeassistant_config"
    r"|all_app_configs|all_addon_configs|app_config|addon_config)(?::(rw|ro))?$"
)
RE_SERVICE = re.compile(r"^(?P<service>mqtt|mysql):(?P<rights>provide|want|need)$")
RE_MACHINE = re.compile(
    r"^!?(?:|intel-nuc|khadas-vim3|generic-aarch64|generic-x86-64|odroid-c2|odroid-c4"
    r"|odroid-m1|odroid-n2|odroid-xu|qemuarm-64|qemuarm|qemux86-64|qemux86|raspberrypi"
    r"|raspberrypi2|raspberrypi3-64|raspberrypi3|raspberrypi4-64|raspberrypi4"
    r"|raspberrypi5-64|yellow|green|tinker)$"
)
RE_DOCKER_PORT = re.compile(r"^\d+(?:/tcp|/udp)?$")
RE_WATCHDOG = re.compile(r"^(?:https?|\[PROTO:\w+\]|tcp):\/\/\[HOST\]:(\[PORT:\d+\]|\d+).*$")
RE_WEBUI = re.compile(r"^(?:https?|\[PROTO:\w+\]):\/\/\[HOST\]:\[PORT:\d+\].*$")
RE_IMAGE_PART = re.compile(r"^[a-z0-9{][a-z0-9.\-_{}]*$")
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool"
    r"|email"
    r"|url"
    r"|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)
# Not the Supervisor's (it takes any string): the frontend draws only mdi: icons.
RE_PANEL_ICON = re.compile(r"^mdi:[a-z0-9]+(?:-[a-z0-9]+)*$")

# --- value checks: each returns an error message or None -----------------

TRUE_FALSE = {"1", "true", "yes", "on", "enable", "0", "false", "no", "off", "disable"}


def is_str(v):
    return None if isinstance(v, str) else f"expected a string, got {v!r}"


def is_bool(v):  # vol.Boolean()
    if isinstance(v, (bool, int, float)) or (isinstance(v, str) and v.lower() in TRUE_FALSE):
        return None
    return f"expected a boolean, got {v!r}"


def to_int(v):  # vol.Coerce(int)
    if isinstance(v, bool):
        return int(v)
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def is_port(v):  # network_port
    n = to_int(v)
    return None if n is not None and 1 <= n <= 65535 else f"expected a port 1-65535, got {v!r}"


def is_version(v):  # version_tag: AwesomeVersion takes strings and numbers
    ok = isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v).strip()
    return None if ok else f"expected a version, got {v!r}"


def is_url(v):  # vol.Url()
    if isinstance(v, str):
        u = urlparse(v)
        if u.scheme and u.netloc:
            return None
    return f"expected a URL, got {v!r}"


def one_of(values):
    return lambda v: None if v in values else f"{v!r} is not one of {', '.join(values)}"


def matches(rx):
    return lambda v: None if isinstance(v, str) and rx.match(v) else f"{v!r} does not match {rx.pattern}"


def list_of(check):
    def run(v):
        if not isinstance(v, list):
            return f"expected a list, got {v!r}"
        errs = [f"[{i}]: {e}" for i, x in enumerate(v) if (e := check(x))]
        return "; ".join(errs) or None
    return run


def dict_of(key_check, value_check):
    def run(v):
        if not isinstance(v, dict):
            return f"expected a mapping, got {v!r}"
        errs = [f"{k}: {e}" for k, x in v.items() if (e := key_check(k) or value_check(x))]
        return "; ".join(errs) or None
    return run


def maybe(check):
    return lambda v: None if v is None else check(v)


def is_image(v):  # docker_image, without the registry-domain details
    if not isinstance(v, str) or not v:
        return f"expected an image name, got {v!r}"
    parts = v.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if ":" in "/".join(parts):
        return f"{v!r}: no tag (version sets it)"
    bad = [p for p in parts if not RE_IMAGE_PART.match(p)]
    return f"{v!r}: bad component {bad[0]!r}" if bad else None


def is_map_entry(v):
    if isinstance(v, str):
        return None if RE_VOLUME.match(v) else f"{v!r} is not TYPE[:rw|:ro] (the Supervisor skips it)"
    if isinstance(v, dict):
        if "type" not in v:
            return "an entry without type (the Supervisor skips it)"
        return (one_of(MAP_TYPES + list(MAP_LEGACY))(v["type"])
                or ("read_only must be true or false" if not isinstance(v.get("read_only", True), bool) else None)
                or (is_str(v["path"]) if "path" in v else None))
    return f"expected a string or mapping, got {v!r}"


def is_ulimit(v):
    if to_int(v) is not None:
        return None
    if isinstance(v, dict) and set(v) == {"soft", "hard"} and None not in map(to_int, v.values()):
        return None
    return f"expected an integer or {{soft, hard}}, got {v!r}"


def is_timeout(v):
    n = to_int(v)
    return None if n is not None and 10 <= n <= 300 else f"expected 10-300 seconds, got {v!r}"


def is_ingress_port(v):
    return None if to_int(v) == 0 else is_port(v)


def schema_element(v, in_list=False):  # SCHEMA_ELEMENT
    if isinstance(v, str):
        return None if RE_SCHEMA_ELEMENT.match(v) else f"unknown option type {v!r}"
    if isinstance(v, list) and not in_list:
        if len(v) != 1:
            return "a list type holds exactly one element type"
        return schema_element(v[0], in_list=True) if not isinstance(v[0], list) else "a list may not hold a list"
    if isinstance(v, dict):
        errs = [f"{k}: {e}" for k, x in v.items() if (e := schema_element(x))]
        return "; ".join(errs) or None
    return f"unknown option type {v!r}"


def is_schema(v):
    if v is False:
        return None
    return dict_of(is_str, schema_element)(v)


# Every key of _SCHEMA_APP_CONFIG and its check. Required: name, version, slug,
# description, arch.
REQUIRED = ["name", "version", "slug", "description", "arch"]
KEYS = {
    "name": is_str,
    "version": is_version,
    "slug": matches(RE_SLUG),
    "description": is_str,
    "arch": list_of(one_of(ARCH_ALL + ARCH_DEPRECATED)),
    "machine": list_of(matches(RE_MACHINE)),
    "url": is_url,
    "startup": one_of(STARTUP + list(STARTUP_MIGRATED)),
    "boot": one_of(BOOT),
    "init": is_bool,
    "advanced": is_bool,
    "stage": one_of(STAGE),
    "ports": dict_of(matches(RE_DOCKER_PORT), maybe(is_port)),
    "ports_description": dict_of(matches(RE_DOCKER_PORT), is_str),
    "watchdog": matches(RE_WATCHDOG),
    "webui": matches(RE_WEBUI),
    "ingress": is_bool,
    "ingress_port": is_ingress_port,
    "ingress_entry": is_str,
    "ingress_stream": is_bool,
    "panel_icon": matches(RE_PANEL_ICON),
    "panel_title": is_str,
    "panel_admin": is_bool,
    "homeassistant": is_version,
    "host_network": is_bool,
    "host_pid": is_bool,
    "host_ipc": is_bool,
    "host_uts": is_bool,
    "host_dbus": is_bool,
    "devices": list_of(is_str),
    "udev": is_bool,
    "tmpfs": is_bool,
    "map": list_of(is_map_entry),
    "environment": dict_of(is_str, is_str),
    "privileged": list_of(one_of(CAPABILITIES)),
    "apparmor": is_bool,
    "full_access": is_bool,
    "audio": is_bool,
    "video": is_bool,
    "gpio": is_bool,
    "usb": is_bool,
    "uart": is_bool,
    "devicetree": is_bool,
    "kernel_modules": is_bool,
    "realtime": is_bool,
    "hassio_api": is_bool,
    "hassio_role": one_of(ROLES),
    "homeassistant_api": is_bool,
    "stdin": is_bool,
    "legacy": is_bool,
    "docker_api": is_bool,
    "auth_api": is_bool,
    "services": list_of(matches(RE_SERVICE)),
    "discovery": list_of(is_str),
    "backup_exclude": list_of(is_str),
    "backup_pre": is_str,
    "backup_post": is_str,
    "backup": one_of(BACKUP),
    "options": lambda v: None if isinstance(v, dict) else "expected a mapping",
    "schema": is_schema,
    "image": is_image,
    "ulimits": dict_of(is_str, is_ulimit),
    "timeout": is_timeout,
    "journald": is_bool,
    "breaking_versions": list_of(is_version),
    "codenotary": lambda v: None,
}


# --- options against their schema (AppOptions._single_validate) ----------

def option_value(typ, value):
    if isinstance(typ, list):
        if not isinstance(value, list):
            return "expected a list"
        return "; ".join(e for x in value if (e := option_value(typ[0], x))) or None
    if isinstance(typ, dict):
        if not isinstance(value, dict):
            return "expected a mapping"
        return "; ".join(f"{k}: {e}" for k, x in value.items()
                         if (e := "not in the schema" if k not in typ else option_value(typ[k], x))) or None
    if value is None or (isinstance(value, str) and value.startswith("!secret ")):
        return None  # null makes the option required; a secret is read at start
    m = RE_SCHEMA_ELEMENT.match(typ)
    if not m:
        return None  # reported with the schema
    lo_hi = [m.group(g) for g in ("s_min", "s_max", "p_min", "p_max", "i_min", "i_max", "f_min", "f_max")]
    base = typ.split("(")[0].rstrip("?")
    if base in ("str", "password"):
        if not isinstance(value, str):
            return f"expected a string, got {value!r}"
        lo, hi = (lo_hi[0], lo_hi[1]) if base == "str" else (lo_hi[2], lo_hi[3])
        if (lo and len(value) < int(lo)) or (hi and len(value) > int(hi)):
            return f"length outside {typ}"
        return None
    if base in ("int", "float"):
        try:
            n = int(value) if base == "int" else float(value)
        except (TypeError, ValueError):
            return f"expected {base}, got {value!r}"
        lo, hi = (lo_hi[4], lo_hi[5]) if base == "int" else (lo_hi[6], lo_hi[7])
        return f"{n} outside {typ}" if (lo and n < float(lo)) or (hi and n > float(hi)) else None
    if base == "bool":
        return is_bool(value)
    if base == "url":
        return is_url(value)
    if base == "port":
        return is_port(value)
    if base == "email":
        return None if re.match(r"^[^@\s]+@[^@\s]+$", str(value)) else f"{value!r} is not an email"
    if base == "match":
        return None if re.match(m.group("match"), str(value)) else f"{value!r} does not match {typ}"
    if base == "list":
        values = m.group("list").split("|")
        return None if str(value) in values else f"{value!r} is not one of {', '.join(values)}"
    return None  # device: known only on the host


# --- the checks ----------------------------------------------------------

def check_config(cfg):
    """Problems and notes of one parsed config.yaml."""
    problems, notes = [], []
    if not isinstance(cfg, dict):
        return ["config.yaml: expected a mapping"], notes
    cfg = dict(cfg)
    for old, new in KEYS_MIGRATED.items():
        if old in cfg:
            notes.append(f"config.yaml: {old}: deprecated, the Supervisor renames it to {new}")
            cfg[new] = cfg.pop(old)
    for key in REQUIRED:
        if key not in cfg:
            problems.append(f"config.yaml: {key}: required key missing")
    for key, value in cfg.items():
        if key not in KEYS:
            problems.append(f"config.yaml: {key}: unknown key (the Supervisor would drop it)")
        elif err := KEYS[key](value):
            problems.append(f"config.yaml: {key}: {err}")
    for key in KEYS_IGNORED:
        if key in cfg:
            notes.append(f"config.yaml: {key}: deprecated and ignored by the Supervisor")
    if cfg.get("startup") in STARTUP_MIGRATED:
        notes.append(f"config.yaml: startup: {cfg['startup']!r} is deprecated, "
                     f"use {STARTUP_MIGRATED[cfg['startup']]}")
    for arch in cfg.get("arch") or []:
        if arch in ARCH_DEPRECATED:
            notes.append(f"config.yaml: arch: {arch} is deprecated by the Supervisor")
    for entry in cfg.get("map") or []:
        kind = entry.get("type") if isinstance(entry, dict) else str(entry).split(":")[0]
        if kind in MAP_LEGACY:
            notes.append(f"config.yaml: map: {kind} is legacy since Supervisor 2026.07.1 "
                         f"({MAP_LEGACY[kind]} there; older ones know only {kind})")
    # _warn_app_config rejects this: the dynamic ingress port could land on a mapped one.
    if cfg.get("ingress") is True and to_int(cfg.get("ingress_port")) == 0:
        for port in cfg.get("ports") or {}:
            n = to_int(str(port).partition("/")[0])
            if n is not None and INGRESS_DYNAMIC_PORTS[0] <= n <= INGRESS_DYNAMIC_PORTS[1]:
                problems.append(f"config.yaml: ports: {port} is in the dynamic ingress range")
    options, schema = cfg.get("options") or {}, cfg.get("schema")
    if isinstance(options, dict) and isinstance(schema, dict):
        for key, value in options.items():
            if key not in schema:
                problems.append(f"config.yaml: options: {key}: has no schema entry")
            elif err := option_value(schema[key], value):
                problems.append(f"config.yaml: options: {key}: {err}")
    return problems, notes


def load_yaml(path, problems):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        problems.append(f"{path.name}: cannot read: {e}".replace("\n", " "))
        return None


def check_translations(cfg, addon, problems):
    schema = cfg.get("schema") if isinstance(cfg.get("schema"), dict) else {}
    ports = {str(p).lower() for p in (cfg.get("ports") or {})}
    for path in sorted((addon / "translations").glob("*.y*ml")):
        where = f"translations/{path.name}"
        data = load_yaml(path, problems) or {}
        conf = data.get("configuration") or {}
        for key, entry in conf.items():
            if key not in schema:
                problems.append(f"{where}: {key}: not an option in config.yaml")
            elif not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                problems.append(f"{where}: {key}: needs a name")
        if path.name == "en.yaml":
            for key in schema:
                entry = conf.get(key)
                if not (isinstance(entry, dict) and entry.get("name") and entry.get("description")):
                    problems.append(f"{where}: {key}: option has no name and description")
        for port, text in (data.get("network") or {}).items():
            if str(port).lower() not in ports or not isinstance(text, str):
                problems.append(f"{where}: network: {port}: not a port in config.yaml")
    if not (addon / "translations" / "en.yaml").is_file():
        problems.append("translations/en.yaml: missing")


def check_files(cfg, addon, problems, notes):
    for name in ["DOCS.md", "CHANGELOG.md", "icon.png", "Dockerfile", "run.sh"]:
        if not (addon / name).is_file():
            problems.append(f"{name}: missing")
    run = addon / "run.sh"
    if run.is_file():
        if not run.stat().st_mode & 0o100:
            problems.append("run.sh: not executable (chmod +x)")
        bind = re.search(r"\bBIND=\S*:(\d+)", run.read_text())
        port = to_int(cfg.get("ingress_port", 8099))
        if cfg.get("ingress") is True and bind and int(bind.group(1)) != port:
            problems.append(f"run.sh: BIND port {bind.group(1)} is not ingress_port {port}")
    for name in ["icon.png", "logo.png"]:
        path = addon / name
        if path.is_file():
            head = path.read_bytes()[:24]
            if head[:8] != b"\x89PNG\r\n\x1a\n":
                problems.append(f"{name}: not a PNG")
            elif name == "icon.png" and head[16:20] != head[20:24]:
                problems.append("icon.png: not square")
    changelog = addon / "CHANGELOG.md"
    if changelog.is_file() and str(cfg.get("version")) not in changelog.read_text():
        problems.append(f"CHANGELOG.md: no entry for version {cfg.get('version')}")
    dockerfile = addon / "Dockerfile"
    has_build_yaml = any((addon / f"build.{s}").is_file() for s in ("yaml", "yml", "json"))
    if has_build_yaml:
        notes.append("build.yaml: deprecated since Supervisor 2026.04.0; set FROM in the Dockerfile")
    elif dockerfile.is_file() and re.search(r"\$\{?BUILD_FROM\b", dockerfile.read_text()):
        problems.append("Dockerfile: uses BUILD_FROM, which Supervisor 2026.04.0+ no longer passes")


def check_repository(problems):
    found = [p for p in (ROOT / "repository.yaml", ROOT / "addon" / "repository.yaml") if p.is_file()]
    if not found:
        problems.append("repository.yaml: missing")
    for path in found:
        data = load_yaml(path, problems) or {}
        where = str(path.relative_to(ROOT))
        if not isinstance(data.get("name"), str):
            problems.append(f"{where}: name: required string")
        if "url" in data and (err := is_url(data["url"])):
            problems.append(f"{where}: url: {err}")
        if "maintainer" in data and (err := is_str(data["maintainer"])):
            problems.append(f"{where}: maintainer: {err}")


def check_addon(addon=ADDON):
    problems, notes = [], []
    cfg = load_yaml(addon / "config.yaml", problems)
    if cfg is None:
        return problems or ["config.yaml: empty"], notes, 0
    p, notes = check_config(cfg)
    problems += p
    if isinstance(cfg, dict):
        check_translations(cfg, addon, problems)
        check_files(cfg, addon, problems, notes)
    check_repository(problems)
    return problems, notes, len(cfg) if isinstance(cfg, dict) else 0


def self_test():
    good = {"name": "x", "version": "1.0.0", "slug": "x_y", "description": "d", "arch": ["amd64"],
            "ingress": True, "ingress_port": 8099, "panel_icon": "mdi:home",
            "options": {"level": "info"}, "schema": {"level": "list(info|debug)", "pw": "password?"}}
    assert check_config(good)[0] == [], check_config(good)[0]
    broken = {
        "unknown arch": ({"arch": ["amd64", "riscv64"]}, "arch"),
        "bad schema type": ({"schema": {"level": "list(info|debug)", "pw": "secret?"}}, "schema"),
        "missing slug": ({"slug": None}, "slug"),
        "bad slug": ({"slug": "ha fetchers"}, "slug"),
        "unknown key": ({"ingres": True}, "ingres"),
        "bad ingress_port": ({"ingress_port": 70000}, "ingress_port"),
        "bad panel_icon": ({"panel_icon": "home"}, "panel_icon"),
        "bad startup": ({"startup": "later"}, "startup"),
        "bad boot": ({"boot": "always"}, "boot"),
        "option without schema": ({"options": {"level": "info", "extra": 1}}, "extra"),
        "option outside its list": ({"options": {"level": "loud"}}, "level"),
        "version not a version": ({"version": ["1"]}, "version"),
        "bad map": ({"map": ["addon_config:rx"]}, "map"),
    }
    for label, (change, key) in broken.items():
        cfg = {**good, **change}
        cfg = {k: v for k, v in cfg.items() if v is not None}
        problems = check_config(cfg)[0]
        assert any(f": {key}" in p for p in problems), f"{label}: not rejected ({problems})"
    print(f"addon: self-test passed ({len(broken)} broken configs rejected)")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    if sys.argv[1:]:
        print("\n".join(__doc__.strip().splitlines()[-2:]), file=sys.stderr)
        return 2
    problems, notes, n = check_addon()
    for note in notes:
        print(f"addon: note: {note}", file=sys.stderr)
    for problem in problems:
        print(f"addon: {problem}")
    if problems:
        return 1
    print(f"addon: config.yaml valid against the Supervisor schema ({n} keys)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

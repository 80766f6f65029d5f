"""What the layers above add to what an agent is given, registered in their AppConfig.ready().

- Command arguments at delivery: a `snapshot` or `restore` command reaches the agent with its
  workspace's storage settings and key, added only as the command goes out with a heartbeat
  reply, so no secret is ever stored in a command row (apps.snapshots registers both kinds).
- The agent's environment at install: where the agent snapshots the workspace on its own when
  the control plane stays out of reach (agent/protect.py; apps.snapshots registers it).
"""

from __future__ import annotations

from collections.abc import Callable

# kind -> (instance id, kind, args as stored) -> args as delivered
_delivery: dict[str, Callable[[str, str, dict], dict]] = {}
_install_env: list[Callable[[object], dict[str, str]]] = []


def register_delivery_args(kind: str, add: Callable[[str, str, dict], dict]) -> None:
    _delivery[kind] = add


def register_install_env(add: Callable[[object], dict[str, str]]) -> None:
    if add not in _install_env:
        _install_env.append(add)


def delivery_args(instance_id: str, kind: str, args: dict) -> dict:
    add = _delivery.get(kind)
    return add(instance_id, kind, args) if add else args


def install_env(instance) -> dict[str, str]:
    env: dict[str, str] = {}
    for add in _install_env:
        env.update(add(instance))
    return env

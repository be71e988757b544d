"""Third-party extensions found by name: entry points of installed distributions, loaded only when asked for.

A distribution adds an environment, a model provider or a method without a fork by declaring an
entry point in one of the groups below (``[project.entry-points."learnact.envs"]`` in its
``pyproject.toml``). Discovery reads the installed metadata only; a plugin's module is imported when its
name is used, so a broken plugin never breaks a built-in name or an unrelated command. Whatever a plugin
does wrong (it cannot be imported, it is not what its group expects, it raises or returns something else
than promised) becomes a :class:`PluginError` naming the distribution and the entry point, never a
traceback; the traceback goes to the DEBUG log (``learnact -vv``) for the plugin's author.

A plugin is code its user chose to install and runs on the host with the user's rights: it is trusted
like any installed package. What it builds is held to the same contracts as the built-in parts (an
environment still validates every primitive call; a backbone's answers are still untrusted text).

This module lives in the lowest room because every room that can be extended uses it; it must never
import another learnact room.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from learnact.actions.errors import LearnactError

log = logging.getLogger(__name__)

ENV_GROUP = "learnact.envs"
BACKBONE_GROUP = "learnact.backbones"
METHOD_GROUP = "learnact.methods"

# A plugin's name: what follows ``--env`` (before any ``/variant``) or comes before ``:`` in ``--model``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
UNKNOWN_DISTRIBUTION = "an unknown distribution"

T = TypeVar("T")


class PluginError(LearnactError):
    """The entry point ``name`` of the group ``group``, declared by the distribution ``distribution``,
    cannot be used; the message says why, the remedy what to do."""

    def __init__(self, group: str, name: str, distribution: str, problem: str, remedy: str = "") -> None:
        self.group, self.name, self.distribution = group, name, distribution
        source = distribution if distribution == UNKNOWN_DISTRIBUTION else f"the distribution {distribution}"
        super().__init__(
            f"the plugin '{name}' (entry point group {group}) of {source} {problem}",
            remedy or f"fix or update {source}, or uninstall it",
        )


@dataclass(frozen=True)
class Plugin:
    """One entry point of a group: its name, the object it names (``module:attribute``) and the
    distribution that declares it. Nothing of it is imported until :meth:`load`."""

    group: str
    name: str
    target: str
    distribution: str
    entry_point: EntryPoint

    def error(self, problem: str, remedy: str = "") -> PluginError:
        """A :class:`PluginError` about this plugin."""
        return PluginError(self.group, self.name, self.distribution, problem, remedy)

    def load(self) -> Any:
        """Import the object the entry point names.

        :raises PluginError: when it cannot be imported (any exception of its module, or a missing attribute).
        """
        try:
            return self.entry_point.load()
        except Exception as exc:  # a third party's import: anything may come, none of it is ours to crash on
            log.debug("loading the plugin %s of %s failed", self.name, self.distribution, exc_info=True)
            raise self.error(f"cannot be loaded from {self.target}: {type(exc).__name__}: {exc}") from None

    def call(self, what: str, factory: Callable[..., T], *args: Any) -> T:
        """``factory(*args)`` (``what`` says what was asked, for the message); a LearnactError of the
        plugin is passed on as it is, for it is meant for the user.

        :raises PluginError: for any other exception of the factory.
        :raises LearnactError: that the factory raised.
        """
        try:
            return factory(*args)
        except LearnactError:
            raise
        except Exception as exc:  # a bug of the plugin: said as one line, its traceback at DEBUG
            log.debug("the plugin %s of %s failed", self.name, self.distribution, exc_info=True)
            raise self.error(f"failed while {what}: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Discovery:
    """What a group holds: the usable plugins by name, and the entry points refused (a built-in name, a
    name declared by two distributions, a malformed name), each as the error that says why."""

    plugins: dict[str, Plugin]
    refused: tuple[PluginError, ...]

    def find(self, name: str) -> Plugin | None:
        """The plugin called ``name``, None when no distribution declares one.

        :raises PluginError: when an entry point of that name was refused.
        """
        refusal = next((error for error in self.refused if error.name == name), None)
        if refusal is not None:
            raise refusal
        return self.plugins.get(name)


def discover(group: str, builtin: Collection[str] = ()) -> Discovery:
    """The entry points of ``group`` in the installed distributions (reads metadata, imports nothing).
    A name in ``builtin`` is refused: a plugin never shadows a built-in part.
    """
    found: dict[str, list[Plugin]] = {}
    for entry in entry_points(group=group):
        distribution = entry.dist.name if entry.dist is not None else UNKNOWN_DISTRIBUTION
        found.setdefault(entry.name, []).append(Plugin(group, entry.name, entry.value, distribution, entry))
    plugins: dict[str, Plugin] = {}
    refused: list[PluginError] = []
    for name, declared in sorted(found.items()):
        plugin = declared[0]
        rename = f"rename the entry point, or uninstall {plugin.distribution}"
        if len(declared) > 1:
            names = " and ".join(sorted({p.distribution for p in declared}))
            problem, remedy = f"is declared by {len(declared)} distributions ({names})", "uninstall all but one"
        elif name in builtin:
            problem, remedy = f"is refused: '{name}' is a built-in name, which a plugin cannot replace", rename
        elif not _NAME.match(name):
            problem, remedy = "is refused: a name holds only letters, digits, '_', '.' and '-'", rename
        else:
            plugins[name] = plugin
            continue
        refused.append(plugin.error(problem, remedy))
    return Discovery(plugins, tuple(refused))

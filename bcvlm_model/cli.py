"""`bcvlm <subcommand>`: one CLI whose subcommands are plugins registered under the `bcvlm.commands` entry point."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import Callable, Sequence

from bcvlm_model.cpu_memory import keep_freed_memory


def _commands() -> dict[str, Callable[[Sequence[str]], int | None]]:
    found = {}
    for entry in entry_points(group="bcvlm.commands"):
        found[entry.name] = entry
    return found  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch `bcvlm NAME ARGS...` to the plugin registered as NAME."""
    args = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    commands = _commands()
    if not args or args[0] in {"-h", "--help"}:
        print("usage: bcvlm <command> [args...]\n\ncommands:")
        for name in sorted(commands):
            print(f"  {name}")
        print("\n`bcvlm <command> --help` shows a command's options.")
        return 0
    name, rest = args[0], args[1:]
    if name not in commands:
        print(f"bcvlm: unknown command '{name}'. Known: {', '.join(sorted(commands))}", file=sys.stderr)
        return 2
    handler = commands[name].load()  # type: ignore[attr-defined]
    result = handler(rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())

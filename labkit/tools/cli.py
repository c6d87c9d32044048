"""The `labkit` command: doctor, run, batch, release, ledger-check, sitting, quiz."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help). Each module exposes `add_arguments(parser)` and `run(args) -> int`.
SUBCOMMANDS = {
    "doctor": ("labkit.tools.envcheck", "report versions, device, online/offline and which assets are usable"),
    "run": ("labkit.tools.runner", "execute notebooks in quick (or full) mode with papermill and print their numbers"),
    "batch": ("labkit.tools.batch", "run a parameter sweep from a SPEC.yaml with papermill (resumable, Dask optional)"),
    "release": ("labkit.tools.release", "generate student notebooks/ from solutions/ (or --check for drift)"),
    "ledger-check": ("labkit.tools.ledger_check", "is the published claims ledger in step with the notebooks?"),
    "sitting": ("labkit.tools.sitting", "estimate each student notebook's working time (one sitting: 75 min at most)"),
    "quiz": ("labkit.quiz.cli", "quiz tools: submit, collect, grade, init-exchange, validate"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labkit", description="labkit: transfer learning, measured.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if name == chosen:  # import only the module that will run: `labkit doctor` stays fast
            importlib.import_module(module_name).add_arguments(p)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

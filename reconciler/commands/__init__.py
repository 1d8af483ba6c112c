"""CLI subcommands. Each module exposes `register(subparsers)`; its parser sets `func(args) -> int`."""

# Order shown in `reconcile --help`.
COMMANDS = ("validate", "observe", "plan", "apply", "drift", "fleet", "export", "controller", "lab",
            "demo")

"""CLI subcommands. Each module defines `register(subparsers)`, which adds its parser(s) and sets
`func` (args -> exit code) as the default; the modules only parse and delegate to the library."""

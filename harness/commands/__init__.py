"""`kpbench` subcommands: each module exposes NAME, HELP, add_arguments(parser), main(args)."""

"""One module per `vatt` subcommand; each exposes `register(subparsers)`."""

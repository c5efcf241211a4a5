"""`python -m nsml ...` is the same as the `nsml` command."""

from nsml.cli.main import main

main()

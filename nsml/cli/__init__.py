"""The `nsml` command: Typer app, one module per command group; parse → call the API → render."""

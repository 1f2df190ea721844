"""The operator's control plane: socket server, commands, client, console, one-shot CLI."""

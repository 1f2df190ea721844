"""The running service: wiring, lifecycle, command line and live view."""

"""Operating the service: health and metrics over HTTP, which calls are sent,
the users map (CSV import, reload), and the `check` command's diagnostics.

Each module is imported on its own (metrics needs prometheus_client; the
others do not), so nothing is imported here.
"""

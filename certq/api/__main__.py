"""`python -m certq.api`: the HTTP API on API_HOST:API_PORT (uvicorn)."""

from __future__ import annotations

import sys

import uvicorn

from certq.settings import STARTUP_FAILURE, SettingsError, load_settings


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"certq.api: configuration error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    from certq.api.app import create_app
    from certq.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format, settings.log_dir)
    app = create_app(settings)
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_config=None, access_log=False,
                proxy_headers=False)


if __name__ == "__main__":
    main()

"""``transcribe-api``: serve the REST API with uvicorn."""

import uvicorn

from ingest_api.app import create_app
from ingest_api.settings import ApiSettings
from transcribe_common.logs import setup_logging


def main() -> None:
    settings = ApiSettings()
    setup_logging("api", settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None)


if __name__ == "__main__":
    main()

"""``transcribe-api``: serve the REST API with uvicorn."""

from ingest_api.app import create_app
from ingest_api.server import serve
from ingest_api.settings import ApiSettings
from transcribe_common.logs import setup_logging
from transcribe_common.runtime import command_line


def main() -> None:
    command_line("transcribe-api", __doc__)
    settings = ApiSettings()
    setup_logging("api", settings.log_level, settings.log_format)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()

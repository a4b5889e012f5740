"""``transcribe-api``: serve the REST API with uvicorn."""

import threading

from ingest_api.app import create_app
from ingest_api.server import serve, server
from ingest_api.settings import ApiSettings
from transcribe_common.logs import setup_logging
from transcribe_common.runtime import command_line


def main() -> None:
    command_line("transcribe-api", __doc__)
    settings = ApiSettings()
    setup_logging("api", settings.log_level, settings.log_format)
    serve(create_app(settings), settings)


def serve_until(settings: ApiSettings, stopping: threading.Event) -> int:
    """Serve on this thread until ``stopping`` is set (``embedded.light`` runs the API so):
    requests in flight then get uvicorn's graceful shutdown. 1 if it could not start (its port taken)."""
    api = server(create_app(settings), settings)

    def stop_when_asked() -> None:
        stopping.wait()
        api.should_exit = True

    threading.Thread(target=stop_when_asked, name="api-stop", daemon=True).start()
    api.run()
    return 0 if api.started else 1


if __name__ == "__main__":
    main()

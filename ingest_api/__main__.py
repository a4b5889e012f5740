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
    ended = threading.Event()

    def stop_when_asked() -> None:  # and no longer once the server has ended (each start has one)
        while not ended.is_set():
            if stopping.wait(STOP_POLL):
                api.should_exit = True
                return

    threading.Thread(target=stop_when_asked, name="api-stop", daemon=True).start()
    try:
        api.run()
    finally:
        ended.set()
    return 0 if api.started else 1


STOP_POLL = 0.5  # seconds: how often the API's stop thread looks whether its server has ended


if __name__ == "__main__":
    main()

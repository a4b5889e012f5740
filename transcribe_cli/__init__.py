"""``transcribe``: the command-line client of the transcription service."""

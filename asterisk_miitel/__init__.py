"""asterisk-miitel: every recorded Asterisk/FreePBX call, into MiiTel.

Data flow, one package per stage:

    ami/        bytes from the Asterisk Manager Interface -> events
    calls/      events -> channel and recording state -> call_data (classify)
    outbox/     call_data + recording, persisted in SQLite, step by step
    miitel/     the Incoming Webhook: schema, client, stand-in server
    recordings/ finding, waiting for and converting MixMonitor files
"""

__version__ = "0.1.0"

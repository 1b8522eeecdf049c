"""python -m zhike_notifications.local_gateways --state-dir .zhike --http-port 8025 --smtp-port 1025

Runs the local HTTP SMS and push gateway and the local SMTP server until SIGINT or SIGTERM,
storing what they receive under <state dir>/gateways/{sms,push,email}/. The HTTP gateway asks for
`Authorization: Bearer <key>` when ZHIKE_LOCAL_GATEWAY_API_KEY is set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from zhike_notifications.local_gateways.server import LocalGateways
from zhike_runtime.logs import configure_logging

API_KEY_VARIABLE = "ZHIKE_LOCAL_GATEWAY_API_KEY"
logger = logging.getLogger("zhike_notifications.local_gateways")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m zhike_notifications.local_gateways",
        description="Local SMS/push (HTTP) and e-mail (SMTP) gateways that store what they receive.",
    )
    parser.add_argument("--state-dir", type=Path, default=Path(".zhike"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8025, help="SMS and push (0: any free)")
    parser.add_argument("--smtp-port", type=int, default=1025, help="e-mail (0: any free)")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(arguments: argparse.Namespace) -> None:
    gateways = LocalGateways(
        arguments.state_dir,
        host=arguments.host,
        http_port=arguments.http_port,
        smtp_port=arguments.smtp_port,
        api_key=os.environ.get(API_KEY_VARIABLE) or None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await gateways.start()
    logger.info(
        "local gateways listening",
        extra={
            "http_url": gateways.http_url,
            "smtp": f"{gateways.host}:{gateways.smtp_port}",
            "directories": {c.value: str(s.directory) for c, s in gateways.stores.items()},
        },
    )
    try:
        await stop.wait()
    finally:
        await gateways.stop()
        logger.info("local gateways stopped")


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    configure_logging("local-gateways", arguments.log_level)
    # uvicorn's start and stop lines carry terminal colour codes; our own lines say the same.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    asyncio.run(serve(arguments))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

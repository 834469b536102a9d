"""The center's public TLS gateway: forwards only Flower's Fleet API (`POST /v1/fleet/<call>`) to the loopback SuperLink.

Flower 1.42 serves the Fleet, Control and Runtime APIs on one port, and the open-source Control API authenticates
nobody. `bcvlm-server` therefore binds the SuperLink to 127.0.0.1 and puts this gateway (Starlette + httpx, served
by uvicorn with the server certificate) on the public address. Requests are passed on with their headers and body
unchanged, so SuperNode authentication (a signature over a timestamp header) still verifies at the SuperLink.
"""

from __future__ import annotations

import argparse
import re
import ssl
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Sequence

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

FLEET_PATH = re.compile(r"/v1/fleet/[a-z][a-z0-9-]{0,63}")
"""The only paths forwarded. A strict pattern, not a prefix test: httpx removes dot segments from URLs, so a prefix
test would let `/v1/fleet/../control/list-runs` reach the Control API."""
FLEET_METHOD = "POST"
"""Every Fleet call of Flower 1.42's SuperNode is a POST (flwr/supernode/fleet_http_client.py)."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Larger bodies are refused: Flower chunks arrays into 5 MB objects, so no Fleet call comes near this."""
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
"""Headers that describe one connection (RFC 9110 7.6.1) and are not forwarded; everything else passes unchanged."""
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway listens, where it forwards to, and the certificates of both TLS hops."""

    listen_host: str
    listen_port: int
    upstream: str
    """Base URL of the loopback SuperLink, e.g. https://127.0.0.1:41234."""
    ca_cert: Path
    """Verifies the SuperLink's certificate on the loopback hop (Flower needs TLS there: SuperNode auth requires it)."""
    server_cert: Path
    server_key: Path
    upstream_timeout_s: float = 300.0

    def command(self, python: str = sys.executable) -> list[str]:
        """`python -m bcvlm_server.fleet_gateway ...` for these settings."""
        return [
            python,
            "-m",
            "bcvlm_server.fleet_gateway",
            "--listen-host",
            self.listen_host,
            "--listen-port",
            str(self.listen_port),
            "--upstream",
            self.upstream,
            "--ca-cert",
            str(self.ca_cert),
            "--server-cert",
            str(self.server_cert),
            "--server-key",
            str(self.server_key),
            "--upstream-timeout",
            str(self.upstream_timeout_s),
        ]


def _forwarded_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name.decode("latin-1").lower() not in HOP_BY_HOP_HEADERS]


def create_gateway_app(upstream: str, ca_cert: Path, upstream_timeout_s: float = 300.0) -> Starlette:
    """The ASGI app: `POST /v1/fleet/<call>` goes to `upstream`; every other request gets 404 (405 for other methods)."""
    verify = ssl.create_default_context(cafile=str(ca_cert))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            base_url=upstream, verify=verify, timeout=upstream_timeout_s, follow_redirects=False, trust_env=False
        ) as client:
            app.state.client = client
            yield

    async def forward(request: Request) -> Response:
        path = request.scope["path"]
        if not FLEET_PATH.fullmatch(path) or request.scope.get("query_string"):
            return PlainTextResponse("not found: this address serves only the Flower Fleet API\n", status_code=404)
        if request.method != FLEET_METHOD:
            return PlainTextResponse(
                f"method {request.method} not allowed\n", status_code=405, headers={"Allow": FLEET_METHOD}
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return PlainTextResponse("request body too large\n", status_code=413)
        client: httpx.AsyncClient = request.app.state.client
        # Content-Length is recomputed by httpx from the body read here (the client may have sent it chunked).
        headers = [(k, v) for k, v in _forwarded_headers(request.headers.raw) if k.lower() != b"content-length"]
        upstream_request = client.build_request(FLEET_METHOD, path, headers=headers, content=bytes(body))
        try:
            upstream_response = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            return PlainTextResponse(f"SuperLink unavailable: {type(exc).__name__}\n", status_code=502)
        return _streamed(upstream_response)

    return Starlette(routes=[Route("/{path:path}", forward, methods=ALL_METHODS)], lifespan=lifespan)


def _streamed(upstream_response: httpx.Response) -> StreamingResponse:
    """The SuperLink's answer, streamed back byte for byte (headers too, minus hop-by-hop ones)."""
    response = StreamingResponse(
        upstream_response.aiter_raw(),
        status_code=upstream_response.status_code,
        background=BackgroundTask(upstream_response.aclose),
    )
    # Replace Starlette's defaults with the upstream headers, repeated ones included.
    response.raw_headers = _forwarded_headers(upstream_response.headers.raw)
    return response


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bcvlm_server.fleet_gateway",
        description="TLS gateway that forwards only Flower's Fleet API to a SuperLink.",
    )
    parser.add_argument("--listen-host", required=True)
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="https://127.0.0.1:PORT of the SuperLink")
    parser.add_argument("--ca-cert", required=True, type=Path)
    parser.add_argument("--server-cert", required=True, type=Path)
    parser.add_argument("--server-key", required=True, type=Path)
    parser.add_argument("--upstream-timeout", type=float, default=300.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the gateway until SIGTERM/SIGINT (uvicorn handles both)."""
    args = build_parser().parse_args(argv)
    app = create_gateway_app(args.upstream, args.ca_cert, args.upstream_timeout)
    uvicorn.run(
        app,
        host=args.listen_host,
        port=args.listen_port,
        ssl_certfile=str(args.server_cert),
        ssl_keyfile=str(args.server_key),
        log_level="info",
        server_header=False,
        proxy_headers=False,
        access_log=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

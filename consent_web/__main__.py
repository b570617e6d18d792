"""`python -m consent_web [--host 127.0.0.1] [--port 47400]`: serve the consent site.

In `local` operator mode it prints a one-time sign-in link, like Jupyter's token. The access
log shows paths only (query strings carry authorization codes and sign-in tokens), and
not the token part of invite links.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import signal
import sys

from werkzeug.serving import WSGIRequestHandler, make_server

from consent_web import create_app, site

DEFAULT_PORT = 47400
access_log = logging.getLogger("consent_web.access")
INVITE_PATH = re.compile(r"^(/invite/)[^/]+")  # an unused invite link is a capability


class PathOnlyRequestHandler(WSGIRequestHandler):
    def log_request(self, code="-", size="-") -> None:
        path = INVITE_PATH.sub(r"\1[redacted]", self.path.split("?", 1)[0])
        access_log.info('%s "%s %s" %s', self.address_string(), self.command, path,
                        getattr(code, "value", code))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consent_web",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)

    app = create_app()
    try:
        server = make_server(args.host, args.port, app, threaded=True,
                             request_handler=PathOnlyRequestHandler)
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    port = server.server_port
    print(f"Consent site: http://{'localhost' if _loopback(args.host) else args.host}:{port}/",
          flush=True)
    with app.app_context():
        state = site.state()
        if state.settings is not None:
            print(f"Public URL (redirect URIs and invite links): {state.settings.public_url}",
                  flush=True)
        if state.settings is None:
            print(f"Almost there: {state.error}. The site explains what to set.", flush=True)
        elif state.settings.operator_auth == "local":
            if not _loopback(args.host):
                print("Warning: local operator sign-in on a non-loopback address; anyone who "
                      "sees a sign-in link can use it.", file=sys.stderr, flush=True)
            signer = app.extensions["local_sign_in"]
            signer.announce = _print_link
            _print_link(signer.link(state.settings.public_url))
        else:
            print(f"Operators sign in with: {state.settings.operator_auth}", flush=True)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_link(link: str) -> None:
    print(f"Operator sign-in (one-time link): {link}", flush=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())

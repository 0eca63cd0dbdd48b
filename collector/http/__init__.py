"""The collector's read-only HTTP query API and live dashboard (issue 14), served next to gRPC.

:mod:`~collector.http.app` (server, routes, middleware, limits), :mod:`~collector.http.auth`
(bearer tokens, roles, denied-request audit), :mod:`~collector.http.api` (JSON handlers and the reads
the dashboard shares), :mod:`~collector.http.pages` (server-rendered HTML),
:mod:`~collector.http.certs` (the seam to agent certificates), ``static/`` (CSS and one small script).
"""

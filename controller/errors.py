"""Domain errors. Each carries the HTTP status it maps to and a message a person can act on.

FleetgateError
 +-- Unauthorized            401  no token, or a token that is wrong, revoked or of the wrong kind
 +-- Forbidden               403  the token's role may not do this
 +-- NotFound                404
 |    +-- SandboxNotFound
 |    +-- TemplateNotFound
 |    +-- HostNotFound
 +-- Conflict                409  the thing exists but is in the wrong state (exec on a stopped sandbox)
 +-- Invalid                 422  well-formed input that makes no sense here (absurd limits, unknown image)
 |    +-- ImageMissing
 +-- EngineError             502  the Docker engine failed on its side
 +-- Unavailable             503  a service fleetgate depends on is not answering
      +-- EngineUnavailable       the Docker engine of a host
      +-- RedisUnavailable
"""

from __future__ import annotations


class FleetgateError(Exception):
    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(FleetgateError):
    status_code = 401


class Forbidden(FleetgateError):
    status_code = 403


class NotFound(FleetgateError):
    status_code = 404


class SandboxNotFound(NotFound):
    def __init__(self, sandbox_id: str) -> None:
        super().__init__(f"no sandbox {sandbox_id!r}; `fleetgate sandbox ls` lists them")


class TemplateNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no template {name!r}; GET /api/v1/templates lists them")


class HostNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"no Docker host {name!r}; GET /api/v1/hosts lists them")


class Conflict(FleetgateError):
    status_code = 409


class Invalid(FleetgateError):
    status_code = 422


class ImageMissing(Invalid):
    def __init__(self, image: str, host: str) -> None:
        super().__init__(
            f"image {image!r} is not on Docker host {host!r}; build the bundled images with "
            f"`fleetgate images build`, or load the image into that engine first"
        )
        self.image = image


class EngineError(FleetgateError):
    status_code = 502


class Unavailable(FleetgateError):
    status_code = 503


class EngineUnavailable(Unavailable):
    def __init__(self, host: str, url: str, cause: object) -> None:
        super().__init__(
            f"the Docker engine of host {host!r} ({url}) is not answering: {cause}. "
            f"Start it (`dockerd &` or `systemctl start docker`) and try again"
        )


class RedisUnavailable(Unavailable):
    def __init__(self, url: str, cause: object) -> None:
        super().__init__(
            f"Redis at {url} is not answering: {cause}. Start it (`redis-server --daemonize yes`) "
            f"or set FLEETGATE_REDIS_URL"
        )

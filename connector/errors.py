"""Why a delivery is not processed: the receiver turns these into HTTP answers."""


class Ignored(Exception):
    """A well-formed delivery that the service procedure does not care about (answered 202)."""


class BadPayload(Exception):
    """A delivery that cannot be understood (answered 400, never queued)."""

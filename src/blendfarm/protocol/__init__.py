"""Every body that crosses the wire, as typed messages: the one source of the API's shapes.

The server encodes these, the node and the CLI decode them, and `/api/openapi.json` is
generated from them (`schemas`), so the document cannot drift from what is sent.

Why msgspec rather than pydantic: the lease/heartbeat/result path runs hundreds of times a
second on a busy farm, and msgspec's Structs decode and validate JSON several times faster
with far less memory per object; they are plain typed classes (mypy-checked, no runtime
magic on attribute access) and msgspec emits JSON Schema 2020-12, which OpenAPI 3.1 uses.

Conventions: responses set every field (no defaults), so the schema marks them all required
and the fuzz test checks each one; requests give defaults to what a sender may leave out.
Unknown fields are ignored on decode, so an older node keeps working with a newer server.
"""

from .codec import *  # noqa: F403
from .messages import *  # noqa: F403

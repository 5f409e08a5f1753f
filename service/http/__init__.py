"""The HTTP layer: the contract loaded, requests validated, handlers called, errors mapped.

The only part of the service that knows aiohttp, statuses and headers. A request flows
``routing`` (authenticate, authorize) -> ``validation`` (the one source of 400s) ->
``handlers`` (one store call) -> ``responses``; ``middleware`` turns every error into
problem+json.
"""

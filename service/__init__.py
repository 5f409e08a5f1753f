"""The inventory service: ``http/`` in front, ``store/`` below, ``problems`` shared by both.

``app`` wires them together; ``cli`` is the ``inventory`` command.
"""

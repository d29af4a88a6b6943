"""The task domain: states, events, the Task aggregate and the errors it raises.

Pure Python on eventsourcing and pydantic, with no I/O.
"""

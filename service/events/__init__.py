"""Video events: the log of state transitions (`video_events`), announced by NOTIFY and fanned
out by one hub per web process to event streams, long-polls and the in-memory status cache.

`from service.events import record_event` is what writers use; the hub (`service.events.hub`),
the event stream route (`service.events.stream`) and progress reports (`service.events.progress`)
are imported where they are needed.
"""

from service.events.log import EventKind, record_event

__all__ = ["EventKind", "record_event"]

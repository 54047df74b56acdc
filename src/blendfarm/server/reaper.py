"""Leases that run out and nodes that went silent: the reaper puts their work back."""

from __future__ import annotations

import logging

from ..settings import Settings
from .store import Store

log = logging.getLogger("blendfarm.server")


def resume(store: Store, settings: Settings) -> None:
    """Before the first reaping of a server that starts: every lease still running gets a
    full `node_timeout` from now, since no node could renew it while the server was down (a
    node that died meanwhile has its chunk requeued one timeout after the start)."""
    extended = store.tasks.extend_leases(settings.node_timeout)
    if extended:
        log.info("%d leases from before the start renewed for %gs", extended, settings.node_timeout)


def reap(store: Store, settings: Settings) -> bool:
    """Requeue every task whose lease expired; mark silent nodes offline. True when tasks went
    back to the queue (nodes waiting for work should hear of it)."""
    expired = store.tasks.expire_leases()
    if expired:
        log.warning("leases ran out for tasks %s: back in the queue", expired)
    for name in store.nodes.mark_offline(settings.node_timeout):
        log.warning("node %s is offline (no heartbeat for %gs)", name, settings.node_timeout)
    return bool(expired)

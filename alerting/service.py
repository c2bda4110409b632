"""AlertService's RPCs, by name: what the servicer (``alerting.grpc``) dispatches to.

The evaluator's side of the contract (TestRule) is not served here yet: the servicer
answers UNIMPLEMENTED for any RPC this map lacks.
"""

from __future__ import annotations

from alerting.activity import ActivityCalls
from alerting.channels import ChannelCalls
from alerting.grpc import Handler
from alerting.rules import RuleCalls
from alerting.silences import SilenceCalls
from storage.postgres.alert_store import AlertStore


def handlers(store: AlertStore, *, max_limit: int) -> dict[str, Handler]:
    """Every RPC this server serves, over ``store``."""
    channels = ChannelCalls(store, max_limit)
    rules = RuleCalls(store, max_limit)
    silences = SilenceCalls(store, max_limit)
    activity = ActivityCalls(store, max_limit)
    return {
        "CreateChannel": channels.create,
        "ListChannels": channels.list,
        "UpdateChannel": channels.update,
        "DeleteChannel": channels.delete,
        "CreateRule": rules.create,
        "GetRule": rules.get,
        "ListRules": rules.list,
        "UpdateRule": rules.update,
        "DeleteRule": rules.delete,
        "CreateSilence": silences.create,
        "ListSilences": silences.list,
        "DeleteSilence": silences.delete,
        "ListAlerts": activity.list_alerts,
        "ListAlertEvents": activity.list_events,
        "AcknowledgeAlert": activity.acknowledge,
        "ListNotifications": activity.list_notifications,
        "ListIncidents": activity.list_incidents,
        "GetIncident": activity.get_incident,
        "UpdateIncident": activity.update_incident,
    }

"""AlertService's RPCs, by name: what the servicer (``alerting.grpc``) dispatches to.

TestRule runs rule queries through the query API's read pool (``pool``); without one
(a server that does not read) it is not served, and the servicer answers UNIMPLEMENTED
for any RPC this map lacks.
"""

from __future__ import annotations

from alerting.activity import ActivityCalls
from alerting.backtest import TestRuleCall
from alerting.channels import ChannelCalls
from alerting.evaluator import EvaluatorSettings
from alerting.grpc import Handler
from alerting.rules import RuleCalls
from alerting.silences import SilenceCalls
from storage.postgres.alert_store import AlertStore
from storage.postgres.reading import ReadPool


def handlers(
    store: AlertStore,
    *,
    max_limit: int,
    pool: ReadPool | None = None,
    settings: EvaluatorSettings | None = None,
) -> dict[str, Handler]:
    """Every RPC this server serves, over ``store`` (and ``pool`` for TestRule)."""
    channels = ChannelCalls(store, max_limit)
    rules = RuleCalls(store, max_limit)
    silences = SilenceCalls(store, max_limit)
    activity = ActivityCalls(store, max_limit)
    served: dict[str, Handler] = {
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
    if pool is not None:
        served["TestRule"] = TestRuleCall(store, pool, settings or EvaluatorSettings())
    return served

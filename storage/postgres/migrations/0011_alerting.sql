-- 0011: alerting (proto/otlpd/alerting/v1/alerting.proto, docs/alerting.md). Every table
-- alerting needs: what users configure (channels, rules, silences), what the evaluator
-- keeps (each rule's schedule and lease, each alert series' state, their transitions),
-- what the senders deliver (the notification outbox and its attempts) and incidents.
--
-- * Keys start with project_id, as in 0001 (Citus distributes on it). Ids are text the
--   server draws (16 hex digits), unique within their project.
-- * Nothing a user typed is ever SQL: a rule's condition is the proto message of its
--   kind, validated by the server and stored as its canonical JSON (json_format with
--   proto field names), and read back by parsing that JSON into the message again.
-- * Durations of rules are seconds in double precision columns (*_s), so that SQL can
--   schedule with make_interval(secs => ...).
--
-- The evaluator's state machine (Prometheus' alerting rules, per series):
--
--     inactive --(condition holds)--> pending --(held for `for`)--> firing
--        ^  ^                            |                            |
--        |  +------(stops holding)-------+ (event CANCELLED)          |
--        +----(stopped holding and keep_firing_until passed)----------+ (event RESOLVED)
--
--   `for` = 0 goes inactive -> firing in one evaluation (one FIRING event, no PENDING).
--   A series is identified by (rule_id, fingerprint): the Alertmanager fingerprint of its
--   whole label set (alertname, the rule's labels, the query's labels), alerting/labels.py.
--   While pending, active_at is when it became pending, and pending -> firing happens at
--   the first evaluation at or after active_at + for: the timer is a row, so a replica
--   that takes over the rule continues it. When a firing series stops holding,
--   keep_firing_until = that evaluation's time + keep_firing_for; it resolves at the first
--   evaluation past it that still does not hold (0: at once). A firing notification is
--   queued on FIRING and again every repeat_interval while firing (last_notified_at),
--   unless silenced or acknowledged; a resolved one on RESOLVED if the firing one was
--   queued. Inactive rows are kept (the resolved notification and ListAlerts need them)
--   and may be deleted by the evaluator 15 minutes after resolved_at, as Prometheus
--   forgets resolved alerts.
--
-- The fence (one evaluation of a rule per interval, whatever the number of replicas):
--
--   1. The evaluator is one job of otlpd's scheduler (otlpd/scheduler.py): a round runs
--      on the replica that holds the job's advisory lock, so two replicas never evaluate
--      at the same moment. That lock dies with its session (a killed process).
--   2. A round claims due rules in alert_rule_schedule (next_eval_at <= now() and no live
--      lease), FOR UPDATE SKIP LOCKED, setting lease_owner, lease_expires_at and fence =
--      fence + 1, and commits the claim.
--   3. It evaluates each claimed rule, then writes everything the evaluation produced
--      (alert_state, alert_events, alert_notifications, incidents) in ONE transaction
--      that starts by re-reading the schedule row FOR UPDATE and checking that fence and
--      lease_owner are still its own, and ends by setting next_eval_at to the next slot
--      (the claimed next_eval_at + interval, moved past now by whole intervals if behind),
--      last_eval_at, and clearing the lease. If the fence moved (the lease expired and
--      another replica claimed the rule) the transaction is rolled back: its evaluation
--      never happened. So each slot of each rule commits at most once, and a replica killed
--      mid-evaluation leaves the slot due for the next claimer, with every pending timer
--      where it was.

-- ---- configuration -------------------------------------------------------------------

CREATE TABLE alert_channels (
    project_id text NOT NULL,
    channel_id text NOT NULL,
    name text NOT NULL CHECK (name <> '' AND char_length(name) <= 200),
    kind text NOT NULL CHECK (kind IN ('webhook', 'slack', 'email')),
    config jsonb NOT NULL CHECK (jsonb_typeof(config) = 'object'),
    version bigint NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, channel_id),
    UNIQUE (project_id, name)
);

COMMENT ON TABLE alert_channels IS
    'Where notifications go (AlertService Channel). Secrets (header values, a Slack URL) '
    'are stored as given: the senders need them; the API never answers them.';
COMMENT ON COLUMN alert_channels.config IS
    'The Channel''s webhook, slack or email message as proto JSON (field names as in the '
    'proto): {"url", "headers": {name: value}} | {"url"} | {"to": [address]}.';
COMMENT ON COLUMN alert_channels.version IS 'Optimistic concurrency: UpdateChannel names it.';

CREATE TABLE alert_rules (
    project_id text NOT NULL,
    rule_id text NOT NULL,
    name text NOT NULL CHECK (name <> '' AND char_length(name) <= 200),
    version bigint NOT NULL DEFAULT 1 CHECK (version > 0),
    kind text NOT NULL CHECK (kind IN ('metric', 'logs', 'spans', 'slo')),
    condition jsonb NOT NULL CHECK (jsonb_typeof(condition) = 'object'),
    comparator text CHECK (comparator IN ('GT', 'GTE', 'LT', 'LTE', 'EQ', 'NE', 'ABSENT')),
    threshold double precision
        CHECK (threshold > '-Infinity' AND threshold < 'Infinity'),
    interval_s double precision NOT NULL CHECK (interval_s >= 1 AND interval_s <= 86400),
    for_s double precision NOT NULL DEFAULT 0 CHECK (for_s >= 0),
    keep_firing_for_s double precision NOT NULL DEFAULT 0 CHECK (keep_firing_for_s >= 0),
    repeat_interval_s double precision NOT NULL CHECK (repeat_interval_s >= 60),
    labels jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    annotations jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(annotations) = 'object'),
    no_data text NOT NULL CHECK (no_data IN ('OK', 'ALERTING', 'KEEP_LAST')),
    on_error text NOT NULL CHECK (on_error IN ('OK', 'ALERTING', 'KEEP_LAST')),
    incident_group_by text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, rule_id),
    UNIQUE (project_id, name),
    CHECK ((kind = 'slo') = (comparator IS NULL)),
    CHECK ((threshold IS NULL) = (kind = 'slo' OR comparator = 'ABSENT'))
);

COMMENT ON TABLE alert_rules IS
    'Alerting rules (AlertService Rule); the channels they notify are in alert_rule_channels.';
COMMENT ON COLUMN alert_rules.kind IS 'Which field of the Rule.condition oneof: metric, logs, spans or slo.';
COMMENT ON COLUMN alert_rules.condition IS
    'The MetricCondition, LogCondition, SpanCondition or SloCondition as proto JSON with proto '
    'field names (json_format.MessageToDict(..., preserving_proto_field_name=True)), built by '
    'the server from a validated message, defaults filled in. Parse it back with ParseDict.';
COMMENT ON COLUMN alert_rules.comparator IS 'Rule.Comparator by name; NULL for slo rules.';
COMMENT ON COLUMN alert_rules.threshold IS 'NULL for slo rules and ABSENT.';
COMMENT ON COLUMN alert_rules.labels IS 'Added to every alert of the rule: {name: value}.';
COMMENT ON COLUMN alert_rules.annotations IS
    'Templates ({{ $value }}, {{ $labels.x }}; alerting/templates.py), checked to parse.';
COMMENT ON COLUMN alert_rules.no_data IS 'Rule.Outcome when the query returns no series.';
COMMENT ON COLUMN alert_rules.on_error IS 'Rule.Outcome when the query fails.';

CREATE TABLE alert_rule_channels (
    project_id text NOT NULL,
    rule_id text NOT NULL,
    channel_id text NOT NULL,
    position smallint NOT NULL,
    PRIMARY KEY (project_id, rule_id, channel_id),
    FOREIGN KEY (project_id, rule_id) REFERENCES alert_rules ON DELETE CASCADE,
    FOREIGN KEY (project_id, channel_id) REFERENCES alert_channels ON DELETE RESTRICT
);

CREATE INDEX alert_rule_channels_channel_idx ON alert_rule_channels (project_id, channel_id);

COMMENT ON TABLE alert_rule_channels IS
    'Rule.channel_ids: a channel a rule notifies cannot be deleted (RESTRICT).';
COMMENT ON COLUMN alert_rule_channels.position IS 'Index in Rule.channel_ids.';

CREATE TABLE alert_silences (
    project_id text NOT NULL,
    silence_id text NOT NULL,
    matchers jsonb NOT NULL CHECK (jsonb_typeof(matchers) = 'array'),
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    comment text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, silence_id),
    CHECK (ends_at >= starts_at)
);

CREATE INDEX alert_silences_ends_idx ON alert_silences (project_id, ends_at);

COMMENT ON TABLE alert_silences IS
    'Silences (Alertmanager''s): active while starts_at <= now < ends_at. DeleteSilence '
    'sets ends_at to now: expired silences are kept and listed.';
COMMENT ON COLUMN alert_silences.matchers IS
    '[{"name", "op" ("EQ" | "NEQ" | "RE" | "NRE"), "value"}]; matched by alerting/matchers.py.';

-- ---- evaluation --------------------------------------------------------------------------

CREATE TABLE alert_rule_schedule (
    project_id text NOT NULL,
    rule_id text NOT NULL,
    next_eval_at timestamptz NOT NULL,
    lease_owner text,
    lease_expires_at timestamptz,
    fence bigint NOT NULL DEFAULT 0,
    last_eval_at timestamptz,
    last_eval_seconds double precision,
    last_error text,
    evaluations bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, rule_id),
    FOREIGN KEY (project_id, rule_id) REFERENCES alert_rules ON DELETE CASCADE,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);

CREATE INDEX alert_rule_schedule_due_idx ON alert_rule_schedule (next_eval_at, project_id);

COMMENT ON TABLE alert_rule_schedule IS
    'When each rule is next evaluated, and who holds it meanwhile: the fence of the 0011 '
    'header. One row per rule, made with the rule (next_eval_at = now: due at once), '
    'updated by the evaluator only; UpdateRule keeps the row.';
COMMENT ON COLUMN alert_rule_schedule.next_eval_at IS
    'The slot to evaluate next; advanced by interval_s in the transaction that commits '
    'the evaluation of the current one.';
COMMENT ON COLUMN alert_rule_schedule.lease_owner IS
    'The replica (host:pid:random) that claimed the rule; NULL: unclaimed.';
COMMENT ON COLUMN alert_rule_schedule.lease_expires_at IS
    'After this another replica may claim the rule (the claimer is presumed dead).';
COMMENT ON COLUMN alert_rule_schedule.fence IS
    'Incremented by every claim; a commit of results checks that it is still the one it '
    'claimed with, else rolls back.';
COMMENT ON COLUMN alert_rule_schedule.evaluations IS
    'Evaluations committed: one per slot, whatever the number of replicas.';

CREATE TABLE alert_state (
    project_id text NOT NULL,
    rule_id text NOT NULL,
    fingerprint bigint NOT NULL,
    labels jsonb NOT NULL CHECK (jsonb_typeof(labels) = 'object'),
    annotations jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(annotations) = 'object'),
    state text NOT NULL CHECK (state IN ('inactive', 'pending', 'firing')),
    value double precision,
    active_at timestamptz,
    fired_at timestamptz,
    resolved_at timestamptz,
    last_evaluated_at timestamptz NOT NULL,
    keep_firing_until timestamptz,
    last_notified_at timestamptz,
    flapping boolean NOT NULL DEFAULT false,
    flapping_since timestamptz,
    transitions timestamptz[] NOT NULL DEFAULT '{}',
    acknowledged_at timestamptz,
    acknowledged_by text,
    acknowledgement text,
    incident_id text,
    rule_version bigint NOT NULL,
    PRIMARY KEY (project_id, rule_id, fingerprint),
    FOREIGN KEY (project_id, rule_id) REFERENCES alert_rules ON DELETE CASCADE,
    CHECK (state = 'inactive' OR active_at IS NOT NULL),
    CHECK (state <> 'firing' OR fired_at IS NOT NULL)
);

CREATE INDEX alert_state_active_idx ON alert_state (project_id, state, active_at)
    WHERE state <> 'inactive';

COMMENT ON TABLE alert_state IS
    'The current state of every alert series, written by the evaluator in the transaction '
    'of its evaluation (state machine: 0011 header). Survives restarts and failovers.';
COMMENT ON COLUMN alert_state.fingerprint IS
    'Alertmanager''s fingerprint (FNV-1a 64 of the sorted label pairs) of labels, as a '
    'signed bigint; alerting/labels.py computes it. Alert.id is rule_id-<16 hex digits>.';
COMMENT ON COLUMN alert_state.labels IS 'alertname, the rule''s labels and the query''s labels.';
COMMENT ON COLUMN alert_state.annotations IS 'The rule''s annotations rendered at the last evaluation.';
COMMENT ON COLUMN alert_state.value IS 'At the last evaluation; NULL when there was none (ABSENT, no data).';
COMMENT ON COLUMN alert_state.active_at IS 'When it became pending (or firing, without for); NULL while inactive.';
COMMENT ON COLUMN alert_state.fired_at IS 'When the current (or last) firing began.';
COMMENT ON COLUMN alert_state.keep_firing_until IS
    'Set when a firing series stops holding: it resolves at the first evaluation past it '
    'that still does not hold; cleared when it holds again.';
COMMENT ON COLUMN alert_state.last_notified_at IS
    'When a firing notification was last queued: the next is due repeat_interval later.';
COMMENT ON COLUMN alert_state.transitions IS
    'Times of its recent firing and resolved transitions (at most 32, oldest dropped), '
    'for flapping: more than N within the window marks it flapping.';
COMMENT ON COLUMN alert_state.acknowledged_at IS
    'AcknowledgeAlert: no repeat notifications until it resolves (then cleared).';

CREATE TABLE alert_events (
    project_id text NOT NULL,
    event_id bigint GENERATED ALWAYS AS IDENTITY,
    rule_id text NOT NULL,
    fingerprint bigint NOT NULL,
    labels jsonb NOT NULL CHECK (jsonb_typeof(labels) = 'object'),
    kind text NOT NULL CHECK (kind IN ('pending', 'firing', 'resolved', 'cancelled',
                                       'acknowledged', 'flapping', 'settled')),
    from_state text CHECK (from_state IN ('inactive', 'pending', 'firing')),
    to_state text CHECK (to_state IN ('inactive', 'pending', 'firing')),
    value double precision,
    at timestamptz NOT NULL,
    actor text,
    text text,
    PRIMARY KEY (project_id, event_id)
);

CREATE INDEX alert_events_at_idx ON alert_events (project_id, at);
CREATE INDEX alert_events_rule_at_idx ON alert_events (project_id, rule_id, at);

COMMENT ON TABLE alert_events IS
    'Every transition of every alert series (AlertEvent), and acknowledgements. No foreign '
    'key: the history outlives the rule.';
COMMENT ON COLUMN alert_events.at IS 'The evaluation time of a transition; the wall clock of an acknowledgement.';

-- ---- notifications -----------------------------------------------------------------------

CREATE TABLE alert_notifications (
    project_id text NOT NULL,
    notification_id bigint GENERATED ALWAYS AS IDENTITY,
    channel_id text NOT NULL,
    rule_id text,
    incident_id text,
    group_key text NOT NULL,
    alert_status text NOT NULL CHECK (alert_status IN ('firing', 'resolved')),
    fingerprints bigint[] NOT NULL DEFAULT '{}',
    dedup_key text NOT NULL,
    payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    PRIMARY KEY (project_id, notification_id),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);

CREATE UNIQUE INDEX alert_notifications_dedup_idx
    ON alert_notifications (project_id, channel_id, dedup_key);
CREATE INDEX alert_notifications_due_idx ON alert_notifications (next_attempt_at, project_id)
    WHERE status = 'pending';
CREATE INDEX alert_notifications_created_idx ON alert_notifications (project_id, created_at);

COMMENT ON TABLE alert_notifications IS
    'The outbox: one row per message to one channel, inserted in the transaction of the '
    'evaluation that caused it, delivered by the senders (claimed with FOR UPDATE SKIP '
    'LOCKED and a lease), retried with exponential backoff on failure or 5xx, given up on '
    '4xx. No foreign key to the channel: the record outlives it.';
COMMENT ON COLUMN alert_notifications.fingerprints IS 'alert_state.fingerprint of the alerts it carries.';
COMMENT ON COLUMN alert_notifications.dedup_key IS
    'Unique per channel: the same notification queued twice (a replayed evaluation) is '
    'one row. E.g. "<rule_id>/<fingerprint>/<fired_at>/firing/<repeat n>".';
COMMENT ON COLUMN alert_notifications.payload IS
    'The Alertmanager webhook document (version "4") the notification carries; Slack and '
    'e-mail messages are rendered from it when sent.';
COMMENT ON COLUMN alert_notifications.status IS
    'pending (first attempt or a retry due at next_attempt_at), delivered, failed (gave up).';

CREATE TABLE alert_notification_attempts (
    project_id text NOT NULL,
    notification_id bigint NOT NULL,
    attempt integer NOT NULL CHECK (attempt > 0),
    at timestamptz NOT NULL,
    duration_s double precision NOT NULL,
    status_code integer,
    error text,
    PRIMARY KEY (project_id, notification_id, attempt),
    FOREIGN KEY (project_id, notification_id) REFERENCES alert_notifications ON DELETE CASCADE
);

COMMENT ON TABLE alert_notification_attempts IS
    'Every delivery attempt of a notification, written with the update of its outbox row.';
COMMENT ON COLUMN alert_notification_attempts.status_code IS
    'HTTP status or SMTP reply code; NULL when none came back (connection refused, timeout).';
COMMENT ON COLUMN alert_notification_attempts.error IS 'NULL when this attempt delivered it.';

-- ---- incidents -------------------------------------------------------------------------

CREATE TABLE alert_incidents (
    project_id text NOT NULL,
    incident_id text NOT NULL,
    rule_id text,
    group_key text NOT NULL,
    group_labels jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(group_labels) = 'object'),
    title text NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    assignee text NOT NULL DEFAULT '',
    opened_at timestamptz NOT NULL,
    acknowledged_at timestamptz,
    resolved_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, incident_id),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);

-- At most one incident of a group is not resolved: a firing alert joins it or opens one.
CREATE UNIQUE INDEX alert_incidents_open_group_idx ON alert_incidents (project_id, group_key)
    WHERE status <> 'resolved';
CREATE INDEX alert_incidents_opened_idx ON alert_incidents (project_id, opened_at);

COMMENT ON TABLE alert_incidents IS
    'Firing alerts of one group (a rule and the values of its incident_group_by labels): '
    'open -> acknowledged -> resolved (final; a later firing opens a new incident).';
COMMENT ON COLUMN alert_incidents.group_key IS
    '<rule_id>{label="value",...} over the rule''s incident_group_by labels, sorted.';
COMMENT ON COLUMN alert_incidents.rule_id IS 'No foreign key: an incident outlives its rule.';

CREATE TABLE alert_incident_timeline (
    project_id text NOT NULL,
    incident_id text NOT NULL,
    entry_id bigint GENERATED ALWAYS AS IDENTITY,
    at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL CHECK (kind IN ('opened', 'alert_firing', 'alert_resolved',
                                       'notification_sent', 'notification_failed',
                                       'acknowledged', 'note', 'assigned', 'status_changed',
                                       'resolved')),
    actor text NOT NULL DEFAULT '',
    text text NOT NULL DEFAULT '',
    rule_id text,
    fingerprint bigint,
    notification_id bigint,
    status text CHECK (status IN ('open', 'acknowledged', 'resolved')),
    PRIMARY KEY (project_id, incident_id, entry_id),
    FOREIGN KEY (project_id, incident_id) REFERENCES alert_incidents ON DELETE CASCADE
);

COMMENT ON TABLE alert_incident_timeline IS
    'Everything that happened to an incident, in order (entry_id orders entries of one '
    'transaction, which share their at): written in the transaction of what it records.';
COMMENT ON COLUMN alert_incident_timeline.actor IS 'Token id or "local"; empty for otlpd itself.';
COMMENT ON COLUMN alert_incident_timeline.fingerprint IS 'With rule_id: the alert (alert_firing, alert_resolved).';

"""The service's own tables: directory, preferences, the delivery ledger, reminders, templates.

Not projections of the service's events (they hold what people told us and what the sender
did), so they are migrations, not rebuildable read models.
"""

from __future__ import annotations

from cunzhi_platform.migrations import Migration

MIGRATIONS = [
    Migration(
        "0001_notifications",
        """
        CREATE TABLE {schema}.people (
            person_id text PRIMARY KEY,
            name text NOT NULL,
            roles text[] NOT NULL DEFAULT '{}',
            county_id text,
            township_id text,
            station_id text,
            village_id text,
            phone text,
            email text,
            wecom_id text,
            dingtalk_id text,
            active boolean NOT NULL DEFAULT true,
            quiet_start time,
            quiet_end time,
            digest_at time,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX people_township ON {schema}.people (township_id) WHERE active;
        CREATE INDEX people_county ON {schema}.people (county_id) WHERE active;
        CREATE TABLE {schema}.groups (
            group_id text PRIMARY KEY,
            name text NOT NULL,
            township_id text NOT NULL,
            village_id text,
            channel text NOT NULL CHECK (channel IN ('wecom', 'dingtalk')),
            webhook_url text NOT NULL,
            secret text,
            active boolean NOT NULL DEFAULT true,
            last_sent_at timestamptz
        );
        CREATE INDEX groups_township ON {schema}.groups (township_id) WHERE active;
        CREATE TABLE {schema}.preferences (
            person_id text NOT NULL,
            kind text NOT NULL,
            channel text NOT NULL,
            enabled boolean NOT NULL,
            digest boolean NOT NULL DEFAULT false,
            PRIMARY KEY (person_id, kind, channel)
        );
        -- One row per (source event, kind): what the templates render, shared by its deliveries.
        CREATE TABLE {schema}.notices (
            source_event_id uuid NOT NULL,
            kind text NOT NULL,
            source_type text NOT NULL,
            township_id text,
            subject_ref text NOT NULL,
            context jsonb NOT NULL,
            urgent boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (source_event_id, kind)
        );
        CREATE INDEX notices_subject ON {schema}.notices (subject_ref);
        -- The delivery ledger: exactly one row per (source event, recipient, kind, channel).
        -- The delivery id is the unique key's digest, computed by PostgreSQL: the same delivery
        -- has the same id everywhere (providers that dedupe on our id recognise a resend), and
        -- the primary key is the exactly-once guard without a second, wide unique index.
        CREATE TABLE {schema}.deliveries (
            source_event_id uuid NOT NULL,
            recipient_id text NOT NULL,
            kind text NOT NULL,
            channel text NOT NULL,
            delivery_id uuid GENERATED ALWAYS AS (md5(
                source_event_id::text || '|' || recipient_id || '|' || kind || '|' || channel
            )::uuid) STORED PRIMARY KEY,
            township_id text,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'failed',
                                  'cancelled')),
            not_before timestamptz NOT NULL,
            held boolean NOT NULL DEFAULT false,
            digest boolean NOT NULL DEFAULT false,
            attempts integer NOT NULL DEFAULT 0,
            unclear boolean NOT NULL DEFAULT false,
            claim uuid,
            lease_until timestamptz,
            provider_id text,
            digest_id uuid,
            last_error text,
            subject text,
            body text,
            stream_version integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL,
            sent_at timestamptz,
            failed_at timestamptz,
            read_at timestamptz,
            receipt_checked_at timestamptz
        );
        -- SMS sent but not yet known delivered: the receipts the sender asks providers for.
        CREATE INDEX deliveries_receipts ON {schema}.deliveries (sent_at)
            WHERE status = 'sent' AND channel = 'sms';
        CREATE INDEX deliveries_source ON {schema}.deliveries (source_event_id);
        CREATE INDEX deliveries_due ON {schema}.deliveries (not_before)
            WHERE status IN ('pending', 'sending');
        CREATE INDEX deliveries_inbox ON {schema}.deliveries (recipient_id, created_at DESC)
            WHERE channel = 'inbox' AND status IN ('sent', 'delivered');
        CREATE INDEX deliveries_township ON {schema}.deliveries (township_id, status);
        CREATE TABLE {schema}.reminders (
            reminder_id uuid PRIMARY KEY,
            cancel_key text NOT NULL,
            kind text NOT NULL,
            due_at timestamptz NOT NULL,
            township_id text,
            subject_ref text NOT NULL,
            context jsonb NOT NULL,
            step text NOT NULL DEFAULT '',
            recipients text[] NOT NULL,
            status text NOT NULL DEFAULT 'scheduled'
                CHECK (status IN ('scheduled', 'fired', 'cancelled')),
            fired_at timestamptz,
            UNIQUE (cancel_key, kind, step)
        );
        CREATE INDEX reminders_due ON {schema}.reminders (due_at) WHERE status = 'scheduled';
        -- Who submitted what in a call (for the closing reminder to those who submitted nothing).
        CREATE TABLE {schema}.submissions (
            forum_id text NOT NULL,
            topic_id text NOT NULL,
            person_id text NOT NULL,
            village_id text,
            station_id text,
            PRIMARY KEY (forum_id, topic_id)
        );
        CREATE TABLE {schema}.topic_titles (
            topic_id text PRIMARY KEY,
            title text,
            submitter_ids text[] NOT NULL DEFAULT '{}'
        );
        -- Tracked work items (rectification), for reminders and for telling topic submitters.
        CREATE TABLE {schema}.tasks (
            task_id text PRIMARY KEY,
            township_id text NOT NULL,
            title text NOT NULL,
            topic_id text,
            assignee_kind text NOT NULL,
            assignee_id text NOT NULL,
            due_on date NOT NULL
        );
        CREATE TABLE {schema}.issues (
            issue_id text PRIMARY KEY,
            village_id text NOT NULL,
            title text NOT NULL
        );
        CREATE TABLE {schema}.team_members (
            team_id text NOT NULL,
            person_id text NOT NULL,
            PRIMARY KEY (team_id, person_id)
        );
        CREATE TABLE {schema}.templates (
            kind text NOT NULL,
            channel text NOT NULL,
            subject text NOT NULL,
            body text NOT NULL,
            updated_by text NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (kind, channel)
        );
        CREATE TABLE {schema}.endpoints (
            endpoint_id text PRIMARY KEY,
            url text NOT NULL,
            event_types text[] NOT NULL,
            secret text NOT NULL,
            active boolean NOT NULL DEFAULT true,
            disabled_reason text,
            created_at timestamptz NOT NULL
        );
        """,
    ),
    Migration(
        "0002_report_teams_and_roster_roles",
        """
        -- Which teams work for a village: its reports' notices go to their members.
        CREATE TABLE {schema}.team_villages (
            campaign_id text NOT NULL,
            village_id text NOT NULL,
            team_id text NOT NULL,
            PRIMARY KEY (campaign_id, village_id, team_id)
        );
        -- A person's roles are the roles given here (API, CSV: manual_roles) and the one role
        -- each township's roster (meetings) gives them, which a roster update replaces.
        CREATE TABLE {schema}.roster_roles (
            person_id text NOT NULL,
            township_id text NOT NULL,
            role text NOT NULL,
            PRIMARY KEY (person_id, township_id)
        );
        ALTER TABLE {schema}.people ADD COLUMN manual_roles text[] NOT NULL DEFAULT '{}';
        -- Where the roles came from is not known for people already here: all stay as given.
        UPDATE {schema}.people SET manual_roles = roles;
        """,
    ),
    Migration(
        "0003_reports_awaiting_their_team",
        """
        -- A report said due or late before we heard of the team that owes it (the team's and
        -- the report's streams are keyed apart): held here and told once the team is formed.
        CREATE TABLE {schema}.reports_awaiting_team (
            event_id text PRIMARY KEY,
            event_type text NOT NULL,
            campaign_id text NOT NULL,
            subject_id text NOT NULL,
            team_report boolean NOT NULL,
            cancel_key text NOT NULL,
            envelope jsonb NOT NULL,
            payload jsonb NOT NULL
        );
        CREATE INDEX ON {schema}.reports_awaiting_team (campaign_id, subject_id);
        CREATE INDEX ON {schema}.reports_awaiting_team (cancel_key);
        """,
    ),
    Migration(
        "0004_counties_of_campaigns_and_townships",
        """
        -- The county of an event that names only its campaign or township (CampaignOpened):
        -- the county whose organisation department hears of its red lights and escalations.
        CREATE TABLE {schema}.campaign_counties (
            campaign_id text PRIMARY KEY,
            county_id text NOT NULL
        );
        CREATE TABLE {schema}.township_counties (
            township_id text PRIMARY KEY,
            county_id text NOT NULL
        );
        """,
    ),
    Migration(
        "0005_team_members_by_campaign",
        """
        -- A team id is unique only within its campaign round (the round builder names a team
        -- after its village, so a village carried over to the next round has a team of the
        -- same id): members are kept by campaign, or one round's notices reach the other's.
        CREATE TABLE {schema}.team_members_by_campaign (
            campaign_id text NOT NULL,
            team_id text NOT NULL,
            person_id text NOT NULL,
            PRIMARY KEY (campaign_id, team_id, person_id)
        );
        -- Members already here belong to the campaigns their team worked in (team_villages;
        -- a team id two rounds shared keeps both rounds' members: nothing said which was which).
        -- A team no village row names was formed before those rows were kept: no report could
        -- find its members (reports wait until team_villages knows the team), so none is lost.
        INSERT INTO {schema}.team_members_by_campaign
            SELECT DISTINCT v.campaign_id, m.team_id, m.person_id
            FROM {schema}.team_members m JOIN {schema}.team_villages v USING (team_id);
        DROP TABLE {schema}.team_members;
        ALTER TABLE {schema}.team_members_by_campaign RENAME TO team_members;
        """,
    ),
    Migration(
        "0006_reminders_dropped",
        """
        -- A reminder moved to a moment already passed is dropped, not sent late (ours): kept
        -- with its new time and words, and when it was dropped, as the record of it.
        ALTER TABLE {schema}.reminders DROP CONSTRAINT reminders_status_check;
        ALTER TABLE {schema}.reminders ADD CONSTRAINT reminders_status_check
            CHECK (status IN ('scheduled', 'fired', 'cancelled', 'dropped'));
        ALTER TABLE {schema}.reminders ADD COLUMN dropped_at timestamptz;
        """,
    ),
]

-- The processors' records, one row per record id (issue 14). The sink upserts them
-- from the outbox; the product's web app and other tools query them.

CREATE TABLE companies (
    id           text PRIMARY KEY,
    name         text,
    domain       text,
    intent_score double precision,
    intent_at    timestamptz,            -- the time the score is as of
    updated_at   timestamptz NOT NULL
);

CREATE TABLE contacts (
    id           text PRIMARY KEY,
    company_id   text NOT NULL,
    email        text,
    email_status text,
    linkedin_url text,
    title        text,
    data         jsonb NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX contacts_company_id ON contacts (company_id);

CREATE TABLE research (
    id         text PRIMARY KEY,         -- the researchId
    company_id text NOT NULL,
    job_id     text,
    summary    text,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX research_company_id ON research (company_id);

CREATE TABLE reports (
    id           text PRIMARY KEY,       -- the reportId
    company_id   text NOT NULL,
    report_type  text,
    period_start date,
    period_end   date,
    data         jsonb NOT NULL,
    html         text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL    -- a report's e-mail status changes after it is stored
);
CREATE INDEX reports_company_id ON reports (company_id);

CREATE TABLE signals (
    id          text PRIMARY KEY,        -- the signalId: a duplicate signal is one row
    company_id  text NOT NULL,
    signal_type text NOT NULL,
    contact_id  text,
    occurred_at timestamptz NOT NULL,
    data        jsonb NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX signals_company_id ON signals (company_id);
CREATE INDEX signals_occurred_at ON signals (occurred_at);

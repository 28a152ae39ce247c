-- Accounts and billing: the relational part of Polystream. Written only by
-- S2 (the processor); read by S1 (the gateway).

CREATE TABLE users (
    user_id       BIGINT PRIMARY KEY CHECK (user_id > 0),
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    -- argon2id PHC string; the clear-text password never reaches the processor.
    password_hash TEXT NOT NULL,
    cpf           CHAR(11),
    admin         BOOLEAN NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_cpf_key ON users (cpf) WHERE cpf IS NOT NULL;

CREATE TABLE subscriptions (
    user_id    BIGINT PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    plan       TEXT NOT NULL CHECK (plan IN ('basic', 'standard', 'premium')),
    status     TEXT NOT NULL CHECK (status IN ('active', 'past_due', 'cancelled')),
    started_on DATE NOT NULL,
    renews_on  DATE NOT NULL CHECK (renews_on > started_on),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE payments (
    payment_id   UUID PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users ON DELETE CASCADE,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    currency     CHAR(3) NOT NULL,
    method       TEXT NOT NULL CHECK (method IN ('credit_card', 'debit_card', 'pix', 'boleto')),
    status       TEXT NOT NULL CHECK (status IN ('approved', 'pending', 'declined', 'refunded')),
    paid_at      TIMESTAMPTZ NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX payments_by_user ON payments (user_id, paid_at DESC);

CREATE TABLE preferences (
    user_id       BIGINT PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    language      TEXT NOT NULL,
    notifications BOOLEAN NOT NULL,
    theme         TEXT NOT NULL CHECK (theme IN ('light', 'dark', 'system')),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Effectively-once processing: a command's event id is recorded in the same
-- transaction as its effects, with the outcome that was published, so a
-- redelivered command changes nothing and republishes the same outcome.
CREATE TABLE processed_events (
    event_id       UUID PRIMARY KEY,
    event_type     TEXT NOT NULL,
    correlation_id UUID NOT NULL,
    outcome        JSONB NOT NULL,
    processed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

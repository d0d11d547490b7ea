-- credentialflow: the API key table of `PostgresKeyStore`.
--
-- Applied by `PostgresKeyStore::migrate()`, or by your own migration tool. Idempotent: every
-- statement is `IF NOT EXISTS`, so running it again (at every start-up, say) changes nothing.
--
-- Never the key itself: only the digest of its secret (SHA-256, or HMAC-SHA-256 with a pepper
-- named by `hash_version`). Times are seconds since the Unix epoch.

CREATE TABLE IF NOT EXISTS credentialflow_api_keys (
    -- The public id (the `id` part of the key); lookups on the request path use this primary key.
    id            text    PRIMARY KEY,
    -- How `digest` was computed: 'sha256' or 'hmac-sha256:<pepper id>'.
    hash_version  text    NOT NULL,
    digest        bytea   NOT NULL CHECK (octet_length(digest) = 32),
    owner         text    NOT NULL,
    tenant        text,
    name          text,
    scopes        text[]  NOT NULL DEFAULT '{}',
    roles         text[]  NOT NULL DEFAULT '{}',
    attributes    jsonb   NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    plan          text,
    status        text    NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'revoked', 'expired', 'suspended', 'pending_approval')),
    created_at    bigint  NOT NULL CHECK (created_at >= 0),
    expires_at    bigint  CHECK (expires_at >= 0),
    revoked_at    bigint  CHECK (revoked_at >= 0),
    last_used_at  bigint  CHECK (last_used_at >= 0)
);

-- `list_by_owner`: every key of one owner, newest first.
CREATE INDEX IF NOT EXISTS credentialflow_api_keys_owner_idx
    ON credentialflow_api_keys (owner, created_at DESC, id);

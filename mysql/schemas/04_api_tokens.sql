-- API tokens with scopes: `ha-fetchers token create|list|revoke`.
-- Only a SHA-256 of each token is kept; the token itself is printed once.
-- Idempotent; runs on MariaDB 10.11 and MySQL 8.
CREATE TABLE IF NOT EXISTS api_tokens (
    name        VARCHAR(64)   NOT NULL,
    token_hash  CHAR(64)      NOT NULL,
    scope       TEXT          NOT NULL,
    created_at  TIMESTAMP(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (name),
    UNIQUE KEY api_tokens_hash (token_hash)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

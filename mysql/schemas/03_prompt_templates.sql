-- Prompt templates: minijinja bodies the MCP renders by name.
-- Idempotent; runs on MariaDB 10.11 and MySQL 8. Shipped templates are seeded
-- from fetchers/prompts/*.j2, which stay the source of truth.
CREATE TABLE IF NOT EXISTS prompt_templates (
    name        VARCHAR(128)  NOT NULL,
    body        MEDIUMTEXT    NOT NULL,
    description VARCHAR(1024) NOT NULL DEFAULT '',
    enabled     BOOLEAN       NOT NULL DEFAULT TRUE,
    updated_at  TIMESTAMP(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

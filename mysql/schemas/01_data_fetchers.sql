-- Data fetchers: named, parameterised reads over the Home Assistant state
-- mirror. Each row is one fetcher a prompt template can call by `name`.
-- Shipped rows come from the repository's fetchers/*.toml (`ha-fetchers migrate`
-- seeds them); authors add their own with a plain INSERT, and the service
-- picks them up within RELOAD_INTERVAL. See docs/fetchers.md.
--
-- Idempotent and portable: runs on MariaDB 10.11 and MySQL 8, and may be
-- piped into `mysql` by hand as often as you like.

CREATE TABLE IF NOT EXISTS data_fetchers (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name VARCHAR(64) NOT NULL
        COMMENT 'Template identifier: lowercase letters, digits, underscores; starts with a letter',
    description VARCHAR(500) NOT NULL DEFAULT ''
        COMMENT 'What the result holds, for prompt authors',
    source VARCHAR(32) NOT NULL
        COMMENT 'What runs: entities | entity | summary | device_status | template',
    params VARCHAR(4000) NOT NULL DEFAULT '{}'
        COMMENT 'JSON object of default params for the source; callers may override them',
    required_params VARCHAR(500) NOT NULL DEFAULT '[]'
        COMMENT 'JSON array of param names every caller must supply, e.g. ["entity_id"]',
    template TEXT NULL
        COMMENT 'source=template only: minijinja over the states; output that parses as JSON is returned as JSON',
    ttl_seconds INT UNSIGNED NOT NULL DEFAULT 30
        COMMENT 'Longest a cached result is served; a state change in a domain it read ends it sooner',
    timeout_ms INT UNSIGNED NOT NULL DEFAULT 2000
        COMMENT 'A run slower than this returns a timeout error for this fetcher only',
    enabled TINYINT(1) NOT NULL DEFAULT 1
        COMMENT '0 hides the fetcher without deleting it',
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_data_fetchers_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='SQL-registered data fetchers; see docs/fetchers.md';

-- The Master Control Program's own data beside the house, and a `sql` fetcher
-- over it, added by INSERT alone (docs/fetchers.md, "Fetchers over your own
-- MySQL data"). Tests run this file as is.

CREATE TABLE IF NOT EXISTS reminders (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    person VARCHAR(64) NOT NULL,
    title VARCHAR(200) NOT NULL,
    due_at DATETIME NOT NULL,
    done TINYINT(1) NOT NULL DEFAULT 0,
    priority DECIMAL(4,1) NULL,
    tags JSON NULL,
    PRIMARY KEY (id),
    KEY ix_reminders_due (due_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO reminders (person, title, due_at, done, priority, tags) VALUES
  ('ada', 'Water the plants', CURDATE() + INTERVAL 9 HOUR, 0, 2.5, '["garden"]'),
  ('ada', 'Call the plumber', CURDATE() + INTERVAL 14 HOUR, 0, NULL, NULL),
  ('ada', 'Pay the rent', CURDATE() + INTERVAL 10 HOUR, 1, 1.0, '["money"]'),
  ('bob', 'Bins out', CURDATE() + INTERVAL 20 HOUR, 0, NULL, '[]'),
  ('ada', 'Dentist', CURDATE() + INTERVAL 1 DAY + INTERVAL 9 HOUR, 0, NULL, NULL);

INSERT INTO data_fetchers (name, description, source, params, ttl_seconds, timeout_ms)
VALUES (
  'reminders_due_today',
  'Open reminders due today, earliest first; params.person narrows them to one person.',
  'sql',
  '{"query": "SELECT title, person, due_at, priority, tags FROM reminders WHERE done = 0 AND due_at >= CURDATE() AND due_at < CURDATE() + INTERVAL 1 DAY AND (:person IS NULL OR person = :person) ORDER BY due_at",
    "person": null,
    "json_columns": ["tags"]}',
  60, 1000
);

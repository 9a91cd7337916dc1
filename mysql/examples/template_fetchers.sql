-- Two fetchers with new logic, added by INSERT alone (docs/fetchers.md).
-- Templates speak Home Assistant's template language, as prompts do.
-- Tests run this file as is.

INSERT INTO data_fetchers (name, description, source, params, template, ttl_seconds, timeout_ms)
VALUES (
  'climate_below_target',
  'Climate devices whose current temperature is below their target.',
  'template',
  '{}',
  '{%- set ns = namespace(out=[]) -%}
{%- for c in states.climate -%}
  {%- set cur = c.attributes.current_temperature | float(none) -%}
  {%- set target = c.attributes.temperature | float(none) -%}
  {%- if cur is not none and target is not none and cur < target -%}
    {%- set ns.out = ns.out + [{"entity_id": c.entity_id, "name": c.name, "current": cur, "target": target}] -%}
  {%- endif -%}
{%- endfor -%}
{{ ns.out | tojson }}',
  30, 1000
);

INSERT INTO data_fetchers (name, description, source, params, template, ttl_seconds, timeout_ms)
VALUES (
  'batteries_low',
  'Battery sensors below params.below percent (default 20).',
  'template',
  '{"below": 20}',
  '{%- set ns = namespace(out=[]) -%}
{%- for s in states.sensor if s.attributes.device_class == "battery" -%}
  {%- set level = s.state | float(none) -%}
  {%- if level is not none and level < params.below -%}
    {%- set ns.out = ns.out + [{"entity_id": s.entity_id, "name": s.name, "level": level}] -%}
  {%- endif -%}
{%- endfor -%}
{{ ns.out | tojson }}',
  60, 1000
);

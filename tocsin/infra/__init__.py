"""Infrastructure: ClickHouse DDL and queries, the embedded broker launcher, docker files."""

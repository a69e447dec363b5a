"""Operations: metrics, logs, readiness, and the watch over every upstream call."""

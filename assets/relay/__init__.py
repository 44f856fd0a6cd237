"""
The event relay: publishes the outbox (assets.models.OutboxMessage) to the broker.

Modules: partitioning (partition and queue of an event), brokers (RabbitMQ, Redis Streams, SQLite
sink), selectors and services (the relay's reads and writes), runner (the loop), metrics.
"""

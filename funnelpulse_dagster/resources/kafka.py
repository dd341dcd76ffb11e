"""Kafka for FunnelPulse: the embedded broker on a laptop, any Kafka by configuration.

Everything that differs between the two is a field here, set from environment variables in
resources/__init__.py: bootstrap servers, topic, SASL/TLS, how end offsets are learned, and
which Spark source reads the topic.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from funnelpulse_dagster.streaming.offsets import END_OFFSET_MODES, end_offsets, planner_consumer

SPARK_SOURCES = ("python", "kafka")


class KafkaResource(ConfigurableResource):
    bootstrap_servers: str = Field(description="Kafka bootstrap servers (FUNNELPULSE_KAFKA_BOOTSTRAP).")
    topic: str = Field(description="Topic of raw events (FUNNELPULSE_KAFKA_TOPIC).")
    topic_partitions: int = Field(default=4, description="Partitions of the topic when we create it.")
    security_protocol: str = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL."
    )
    sasl_mechanism: str = Field(default="", description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ...")
    sasl_username: str = Field(default="", description="SASL user (FUNNELPULSE_KAFKA_SASL_USERNAME).")
    sasl_password: str = Field(
        default="",
        description="SASL password (FUNNELPULSE_KAFKA_SASL_PASSWORD); set it through the environment.",
    )
    ssl_ca_location: str = Field(default="", description="CA bundle for TLS brokers.")
    end_offsets: str = Field(
        default="fetch",
        description="How the end of a partition is learned: 'fetch' (a fetch response's high "
        "watermark; needed for the embedded broker, whose ListOffsets under-reports) or 'list'.",
    )
    spark_source: str = Field(
        default="python",
        description="'python': FunnelPulse's confluent-kafka source (no JVM connector needed); "
        "'kafka': Spark's own connector, where spark-sql-kafka is on the classpath.",
    )

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by producers, consumers and the Spark source."""
        if self.end_offsets not in END_OFFSET_MODES:
            raise ValueError(f"end_offsets must be one of {END_OFFSET_MODES}, got {self.end_offsets!r}")
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
        }
        config.update({k: v for k, v in optional.items() if v})
        return config

    def producer(self, **overrides: Any):
        """An idempotent producer that waits for every in-sync replica (no loss, no duplicates
        on retry), batching for throughput."""
        from confluent_kafka import Producer

        return Producer(
            {
                **self.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                **overrides,
            }
        )

    def ensure_topic(self, timeout: float = 15.0) -> bool:
        """Create the topic if it does not exist; True when this call created it."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.client_config())
        if self.topic in admin.list_topics(timeout=timeout).topics:
            return False
        future = admin.create_topics([NewTopic(self.topic, self.topic_partitions, 1)])[self.topic]
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return False
            raise
        return True

    def end_offsets_now(self, timeout: float = 10.0) -> dict[int, int]:
        """The topic's end offset per partition (raises KafkaUnavailable when it cannot tell)."""
        consumer = planner_consumer(self.client_config())
        try:
            return end_offsets(consumer, self.topic, self.end_offsets, timeout)
        finally:
            consumer.close()

    def spark_stream_source(self, max_events_per_trigger: int | None = None) -> tuple[str, dict[str, str]]:
        """(format, options) for `spark.readStream`; both formats yield the same columns."""
        if self.spark_source not in SPARK_SOURCES:
            raise ValueError(f"spark_source must be one of {SPARK_SOURCES}, got {self.spark_source!r}")
        client = {f"kafka.{k}": str(v) for k, v in self.client_config().items()}
        if self.spark_source == "kafka":
            options = {**client, "subscribe": self.topic, "startingOffsets": "earliest"}
            if max_events_per_trigger:
                options["maxOffsetsPerTrigger"] = str(max_events_per_trigger)
            return "kafka", options
        from funnelpulse_dagster.streaming.kafka_source import SOURCE_NAME

        options = {**client, "topic": self.topic, "endOffsets": self.end_offsets}
        if max_events_per_trigger:
            options["maxEventsPerTrigger"] = str(max_events_per_trigger)
        return SOURCE_NAME, options

"""Kafka for FunnelPulse: the embedded broker on a laptop, any Kafka by configuration.

Everything that differs between the two is a field here, set from environment variables in
resources/__init__.py: bootstrap servers, topic, SASL/TLS and how end offsets are learned.
Python clients (the replay's producer, the sensor's and the CLI's offset probes) speak
librdkafka's settings; the streaming job reads the topic with Spark's own Kafka source, a JVM
Kafka client, whose settings `spark_stream_source` derives from the same fields.
"""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from funnelpulse_dagster.streaming.offsets import END_OFFSET_MODES, end_offsets, planner_consumer

# the longest a broker holds a fetch of Spark's Kafka source for data not there yet (ms)
SPARK_SOURCE_FETCH_WAIT_MS = 10

# the JVM client's login module per SASL mechanism
_JAAS_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
        default="list",
        description="'list': the broker answers ListOffsets correctly (Apache Kafka). 'fetch': it "
        "under-reports the end of a partition when producers batch (the embedded broker): offset "
        "probes read a fetch response's high watermark instead, and FunnelPulse's producers send "
        "one record per batch, so that Spark's Kafka source, which plans micro-batches from "
        "ListOffsets, sees every message.",
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

    @property
    def listed_end_offsets_wrong(self) -> bool:
        return self.end_offsets == "fetch"

    def producer(self, **overrides: Any):
        """An idempotent producer that waits for every in-sync replica (no loss, no duplicates
        on retry), batching for throughput, unless the broker's listed end offsets count
        batches (`end_offsets='fetch'`): then one record per batch keeps them right."""
        from confluent_kafka import Producer

        batching: dict[str, Any] = {"linger.ms": 20, "batch.size": 1_000_000}
        if self.listed_end_offsets_wrong:
            batching = {"linger.ms": 0, "batch.num.messages": 1}
        return Producer(
            {
                **self.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                **batching,
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

    def jvm_client_config(self) -> dict[str, str]:
        """The same connection as `client_config`, in the JVM Kafka client's settings (Spark's
        Kafka source passes every `kafka.`-prefixed option to it)."""
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            module = _JAAS_LOGIN_MODULES.get(self.sasl_mechanism.upper())
            if module is None:
                raise ValueError(
                    f"sasl_mechanism {self.sasl_mechanism!r}: the streaming job knows "
                    f"{sorted(_JAAS_LOGIN_MODULES)}; set others through Spark's kafka.* options"
                )
            config["sasl.jaas.config"] = (
                f"{module} required username={_jaas_quote(self.sasl_username)} "
                f"password={_jaas_quote(self.sasl_password)};"
            )
        if self.ssl_ca_location:  # a PEM bundle, as librdkafka takes it
            config["ssl.truststore.type"] = "PEM"
            config["ssl.truststore.location"] = self.ssl_ca_location
        return config

    def spark_stream_source(self, max_events_per_trigger: int | None = None) -> dict[str, str]:
        """Options of Spark's Kafka source (`spark.readStream.format("kafka")`) for the topic.

        The checkpoint holds the offsets, so the query starts from the earliest offset once and
        resumes exactly after its last committed micro-batch on every later run; a checkpoint
        whose offsets the topic no longer holds (the embedded broker restarted empty) fails the
        query rather than skipping data silently."""
        options = {f"kafka.{k}": v for k, v in self.jvm_client_config().items()}
        options |= {"subscribe": self.topic, "startingOffsets": "earliest", "failOnDataLoss": "true"}
        # A task reads a closed offset range; once it has fetched its range's end, the consumer's
        # next fetch finds nothing new and the broker holds it for `fetch.max.wait.ms` (500 ms by
        # default) before answering: half a second per task, whatever the batch's size. Answered
        # at once, a small micro-batch's read takes a fraction of that.
        options.setdefault("kafka.fetch.max.wait.ms", str(SPARK_SOURCE_FETCH_WAIT_MS))
        if max_events_per_trigger:
            options["maxOffsetsPerTrigger"] = str(max_events_per_trigger)
        return options

"""The replay job: bronze events for a date range → the Kafka topic, in event-time order."""

from datetime import date, timedelta

from dagster import Config, Failure, MetadataValue, OpExecutionContext, Output, job, op
from pydantic import Field

from funnelpulse_dagster.defs.streaming.live_funnel import topic_observation
from funnelpulse_dagster.resources import KafkaResource, LakeResource, SparkResource
from funnelpulse_dagster.streaming.replay import Pacer, replay, to_messages
from funnelpulse_dagster.tables import BRONZE_EVENTS


class ReplayConfig(Config):
    start_date: str = Field(description="First day to replay (YYYY-MM-DD, UTC).")
    end_date: str = Field(description="Last day to replay, inclusive.")
    events_per_second: float | None = Field(default=None, description="Steady rate; unthrottled when unset.")
    speedup: float | None = Field(
        default=None, description="Event-time pacing instead: 3600 plays an hour of events per second."
    )
    progress_every_seconds: float = Field(default=10.0, description="How often progress goes to the run log.")


def _days(config: ReplayConfig) -> list[date]:
    try:
        first, last = date.fromisoformat(config.start_date), date.fromisoformat(config.end_date)
    except ValueError as exc:
        raise Failure(f"start_date and end_date must be YYYY-MM-DD: {exc}") from exc
    if last < first:
        raise Failure(f"end_date {last} is before start_date {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@op(
    description="Produce bronze events of a date range to Kafka as JSON keyed by user_session, "
    "in event-time order, with an idempotent acks=all producer; fails unless every message "
    "was delivered.",
    tags={"kind": "kafka"},
)
def replay_bronze_to_kafka(
    context: OpExecutionContext,
    config: ReplayConfig,
    spark: SparkResource,
    lake: LakeResource,
    kafka: KafkaResource,
):
    days = _days(config)
    try:
        pacer = Pacer(events_per_second=config.events_per_second, speedup=config.speedup)
    except ValueError as exc:
        raise Failure(str(exc)) from exc
    session = spark.spark_session
    if kafka.ensure_topic():
        context.log.info(f"created topic {kafka.topic} with {kafka.topic_partitions} partitions")

    def load_day(day: date):
        return to_messages(lake.read(session, BRONZE_EVENTS, [day])).toArrow()

    totals = replay(
        kafka.producer(),
        kafka.topic,
        days,
        load_day,
        pacer,
        log=context.log.info,
        progress_every_seconds=config.progress_every_seconds,
    )
    metadata = {
        "events_produced": totals.produced,
        "events_delivered": totals.delivered,
        "delivery_failures": totals.failed,
        "seconds": MetadataValue.float(round(totals.seconds, 2)),
        "events_per_second": MetadataValue.float(round(totals.events_per_second, 1)),
        "events_by_day": MetadataValue.json(totals.per_day),
        "topic": kafka.topic,
        "days": f"{days[0]}..{days[-1]}",
    }
    if totals.failed or totals.delivered != totals.produced:
        raise Failure(
            f"{totals.failed} of {totals.produced} messages were not delivered: {totals.first_error}",
            metadata=metadata,
        )
    context.log_event(topic_observation(kafka.topic, kafka.end_offsets_now(), None))
    context.log.info(
        f"replayed {totals.produced:,} events in {totals.seconds:.1f}s ({totals.events_per_second:,.0f}/s)"
    )
    return Output(totals.produced, metadata=metadata)


@job(description="Feed the Kafka topic from bronze for a date range (laptop demos, tests, benchmarks).")
def kafka_replay_job():
    replay_bronze_to_kafka()

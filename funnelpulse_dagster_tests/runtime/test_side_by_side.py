"""runtime/spark_session.side_by_side: independent Spark actions at once, from threads."""

from __future__ import annotations

import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F

from funnelpulse_dagster.runtime.spark_session import side_by_side


@pytest.mark.both_passes  # threads share one session in-process, and one client in Connect
def test_each_actions_result_comes_back_in_order_and_a_failure_is_raised_after_all_ended(spark):
    frame = spark.range(1000)
    finished = []

    def multiples_of_seven() -> int:
        count = frame.filter(F.col("id") % 7 == 0).count()
        finished.append(count)
        return count

    assert side_by_side(
        multiples_of_seven, lambda: frame.agg(F.sum("id")).collect()[0][0], lambda: "no Spark at all"
    ) == [143, 499500, "no Spark at all"]
    assert side_by_side(multiples_of_seven) == [143]
    assert side_by_side() == []

    with pytest.raises(AnalysisException):
        side_by_side(lambda: spark.sql("SELECT no_such_column FROM range(1)").collect(), multiples_of_seven)
    # the other action was not abandoned: it ran to its end before the failure was raised
    assert finished == [143, 143, 143]

from spark_jobs.documents import position_id


def test_spark_fixture_runs_arrow_batches(spark):
    df = spark.range(0, 100, numPartitions=3)

    def double(batches):
        for b in batches:
            import pyarrow as pa
            import pyarrow.compute as pc

            yield pa.RecordBatch.from_arrays([pc.multiply(b.column(0), 2)], names=["id"])

    total = df.mapInArrow(double, "id long").agg({"id": "sum"}).first()[0]
    assert total == 2 * sum(range(100))
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"


def test_python_workers_talk_to_the_jvm_over_a_unix_socket(spark):
    """The JVM tells the Python daemon which transport to use; each task's worker inherits it."""

    def transport(batches):
        import os

        import pyarrow as pa

        for _ in batches:
            pass
        yield pa.RecordBatch.from_pylist([{"uds": os.environ.get("PYTHON_UNIX_DOMAIN_ENABLED", "unset").lower()}])

    seen = {row.uds for row in spark.range(0, 10, numPartitions=2).mapInArrow(transport, "uds string").collect()}
    assert seen == {"true"}


def test_position_id_is_stable_and_signed():
    a = position_id("file:///x/a.jsonl", 0)
    assert a == position_id("file:///x/a.jsonl", 0)
    assert a != position_id("file:///x/a.jsonl", 1)
    assert a != position_id("file:///x/b.jsonl", 0)
    ids = [position_id("s", i) for i in range(1000)]
    assert all(-(2**63) <= i < 2**63 for i in ids)
    assert any(i < 0 for i in ids) and any(i > 0 for i in ids)


def test_local_driver_jvm_runs_with_the_configured_options(spark):
    """The quick-JIT default reaches the JVM that get_spark started (not only the conf), and the pipeline's config
    carries it; it changes how a run executes, never what it produces."""
    from spark_jobs.config import PipelineConfig, option_fields
    from spark_jobs.session import LOCAL_JAVA_OPTIONS

    mx = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert set(LOCAL_JAVA_OPTIONS.split()) <= set(mx.getInputArguments())
    assert PipelineConfig(input=["x"], output="y").driver_java_options == LOCAL_JAVA_OPTIONS
    assert option_fields()["driver_java_options"].metadata["execution_only"]

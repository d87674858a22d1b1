#!/usr/bin/env bash
# One image, every role of a Spark cluster (docker/spark.Dockerfile):
#   master            standalone master (RPC on SPARK_MASTER_PORT, UI on SPARK_MASTER_WEBUI_PORT)
#   worker            standalone worker registering with SPARK_MASTER_URL (SPARK_WORKER_CORES, SPARK_WORKER_MEMORY)
#   submit ARGS...    spark-submit --master SPARK_MASTER_URL ARGS... (a driver in client mode; docker/compose.yaml)
#   driver ARGS...    \ what Spark on Kubernetes runs in the pods it creates (spark.kubernetes.container.image):
#   executor          / the same contract as Spark's own image entrypoint, with the settings Spark passes in env
# Extra arguments after master/worker go to the Spark class unchanged. spark-class and spark-submit come with the
# pip-installed pyspark; exec hands them PID 1's signals, so `docker stop` stops Spark cleanly.
set -euo pipefail

master_url="${SPARK_MASTER_URL:-spark://spark-master:7077}"
role="${1:-}"
[ "$#" -gt 0 ] && shift

usage() {
  echo "usage: spark-entrypoint.sh master|worker|submit|driver|executor [ARGS...]"
  echo "  e.g. submit /opt/slm/submit.py --input /data/corpus --output /data/out"
}

case "$role" in
  master)
    exec spark-class org.apache.spark.deploy.master.Master \
      --host "${SPARK_MASTER_HOST:-$(hostname)}" \
      --port "${SPARK_MASTER_PORT:-7077}" \
      --webui-port "${SPARK_MASTER_WEBUI_PORT:-8080}" "$@"
    ;;
  worker)
    exec spark-class org.apache.spark.deploy.worker.Worker "$master_url" \
      --cores "${SPARK_WORKER_CORES:-2}" \
      --memory "${SPARK_WORKER_MEMORY:-2g}" \
      --webui-port "${SPARK_WORKER_WEBUI_PORT:-8081}" \
      --work-dir "${SPARK_WORKER_DIR:-/opt/spark-work}" "$@"
    ;;
  submit)
    exec spark-submit --master "$master_url" "$@"
    ;;
  driver)
    # Spark's Kubernetes backend starts the driver pod with "driver --properties-file ... --class ... APP ARGS".
    exec spark-submit --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}" --deploy-mode client "$@"
    ;;
  executor)
    # Executor pods get their settings as SPARK_* variables, their JVM options as SPARK_JAVA_OPT_0, _1, ...
    mapfile -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | cut -d= -f2-)
    spark_home="$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
    exec java "${java_opts[@]}" -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
      -cp "${SPARK_CONF_DIR:-$spark_home/conf}:$spark_home/jars/*" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" --podName "$SPARK_EXECUTOR_POD_NAME"
    ;;
  -h|--help)
    usage
    ;;
  *)
    usage >&2
    exit 64
    ;;
esac

#!/usr/bin/env bash
# PySpark 4 needs Java 17 or newer: say so in one line instead of a JVM gateway traceback.
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
  echo "error: Java not found. PySpark 4 needs Java 17+ (Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless)" >&2
  exit 1
fi
version=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
if [ "${major:-0}" -lt 17 ] 2>/dev/null; then
  echo "error: Java ${version} found, PySpark 4 needs Java 17+ (set JAVA_HOME to a newer JDK)" >&2
  exit 1
fi
echo "java ${version} ok"

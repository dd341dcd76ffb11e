"""The Spark runtime on one machine: the local Spark Connect server (`spark_server`), background
services' pid files and logs (`services`), and the Java side (`jvm`: the pinned artifacts and
the classes a local Spark JVM loads)."""
